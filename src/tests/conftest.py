"""Session-wide test setup: an isolated Airflow home, a real MLflow server, generated data."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, free_port, http_ok, start_process, stop_process, wait_until

# Airflow reads its configuration when first imported, so the test Airflow home must be in
# the environment before any test module imports a DAG.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="sluice-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "src"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
)

VENV_BIN = Path(sys.executable).parent
SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"


def isolate_mlflow_client(mp: pytest.MonkeyPatch, tracking_uri: str | None = None) -> None:
    """Record MLflow's client variables in `mp`, so undoing it puts them back as they were.

    Tasks run in the test process: mlflow.set_tracking_uri and set_experiment export
    MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, and limit_client_retries sets the retry budget
    with os.environ.setdefault, all for the rest of the session unless recorded here. No later
    test should see, or come to rely on, them.
    """
    from models.registry import MLFLOW_CLIENT_RETRY_BUDGET

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", *MLFLOW_CLIENT_RETRY_BUDGET):
        mp.setenv(key, "")  # records the value before (or its absence) for the undo
        mp.delenv(key)
    if tracking_uri:
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)


def reset_mlflow_client() -> None:
    """Forget the tracking URI and experiment that code under test gave MLflow (call before undoing the env)."""
    if "mlflow" in sys.modules:
        import mlflow
        import mlflow.tracking.fluent

        mlflow.set_tracking_uri(None)
        # MLflow has no public call to forget the experiment set_experiment made active.
        mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture
def mlflow_client_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's client settings as they were before the test, whatever the code under test sets."""
    isolate_mlflow_client(monkeypatch)
    yield
    reset_mlflow_client()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database for dag.test() runs."""
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, timeout=300)
    return _AIRFLOW_HOME


@contextmanager
def running_mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` (SQLite + local artifacts under `root`) on a free loopback port; yields its URL."""
    port = free_port()
    log = root / "server.log"
    proc = start_process(
        [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
        ],
        log_path=log,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/health"), timeout=120, what="mlflow server", proc=proc, log_path=log)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """The session's MLflow server; yields its URL."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="session")
def small_raw_csv(tmp_path_factory) -> Path:
    """A generated raw file of 3,000 rows with the published shape and its planted dirty rows."""
    from tasks.data.generate import generate, write_csv

    return write_csv(generate(3_000, seed=7), tmp_path_factory.mktemp("raw") / "wachttijden.csv")
