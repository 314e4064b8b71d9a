"""A real little platform for the web app's browser tests: MLflow with a registered champion, the champion's
model server loading it from the registry, a challenger server, the xray image model's server (the tiny model of
tests/serving/xray_model.py), and the app, all on free 127.0.0.1 ports."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app import launch
from tests.conftest import running_mlflow_server
from tests.serving.servers import SERVER_START_TIMEOUT, SERVING_ENV, SERVING_PYTHON
from tests.support.processes import REPO_ROOT, free_port, http_ok, start_process, stop_process, wait_until

APP_PYTHON = REPO_ROOT / ".venv-app" / "bin" / "python"
MODEL = "wachttijden"
# What the champion's training run "scored": the Models page must show exactly these.
CHAMPION_METRICS = {"validation_mae": 1.2345, "validation_rmse": 1.6789, "test_mae": 1.3456, "test_rmse": 1.789}
GATE_TAGS = {"sluice.gate.decision": "promote", "sluice.gate.reason": "no champion yet: the first model is promoted"}
LINEAGE_TAGS = {"sluice.data.partition": "run=browser-test", "sluice.git_commit": "0" * 40,
                "sluice.airflow.run_id": "manual__browser-test"}


@dataclass
class Platform:
    mlflow: str
    champion: str
    challenger: str
    xray: str
    app: str
    champion_version: str
    pids: list[int]


def register_champion(mlflow_url: str, model_dir: Path, work: Path) -> str:
    """Log `model_dir` as a run's model with scores, curves and lineage, register it, make it champion."""
    from mlflow import MlflowClient

    # An explicit client: the fluent API would leave a tracking URI and experiment set for later tests.
    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.create_experiment("wachttijden-browser-test")
    run = client.create_run(experiment, tags=LINEAGE_TAGS, run_name="champion")
    run_id = run.info.run_id
    for key, value in CHAMPION_METRICS.items():
        client.log_metric(run_id, key, value)
    client.log_artifacts(run_id, str(model_dir), "model")
    work.mkdir(parents=True, exist_ok=True)
    curves = work / "training_curves.png"
    curves.write_bytes(training_curves_png())
    client.log_artifact(run_id, str(curves))
    client.set_terminated(run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version
    for key, value in {**GATE_TAGS, **LINEAGE_TAGS}.items():
        client.set_model_version_tag(MODEL, str(version), key, value)
    client.set_registered_model_alias(MODEL, "champion", str(version))
    return str(version)


def training_curves_png() -> bytes:
    """A small real PNG standing in for the training task's curves figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([3.0, 2.0, 1.5, 1.3], label="train")
    ax.plot([3.1, 2.2, 1.7, 1.5], label="validation")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def app_command(port: int) -> list[str]:
    return launch.command(APP_PYTHON, port)


@contextmanager
def running_platform(root: Path, champion_dir: Path, challenger_dir: Path, xray_dir: Path) -> Iterator[Platform]:
    procs: list[subprocess.Popen] = []
    with running_mlflow_server(root / "mlflow") as mlflow_url:
        version = register_champion(mlflow_url, champion_dir, root / "work")
        try:
            ports = {name: free_port() for name in ("champion", "challenger", "xray", "app")}
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            servers = {
                # The champion loads from the registry by alias, as deploy_model serves it.
                "champion": (f"models:/{MODEL}@champion", {"MLFLOW_TRACKING_URI": mlflow_url}),
                "challenger": (str(challenger_dir), {}),
                # Started with the others: its cold start overlaps theirs (the use case comes from the model).
                "xray": (str(xray_dir), {}),
            }
            for name, (uri, env) in servers.items():
                cmd = [str(SERVING_PYTHON), "-m", "serving.model_server", "--model-uri", uri,
                       "--http-port", str(ports[name])]
                procs.append(start_process(cmd, log_path=root / f"{name}.log", env={**SERVING_ENV, **env}))
            app_env = {**launch.ENV, "SLUICE_APP_MODEL_URL": urls["champion"],
                       "SLUICE_APP_CHALLENGER_URL": urls["challenger"], "SLUICE_APP_MLFLOW_URL": mlflow_url,
                       "SLUICE_APP_DATALAKE_DIR": str(root / "datalake"), "SLUICE_APP_XRAY_URL": urls["xray"]}
            procs.append(start_process(app_command(ports["app"]), log_path=root / "app.log", env=app_env))
            for (name, _), proc in zip([*servers.items(), ("app", None)], procs, strict=True):
                health = f"{urls[name]}{launch.HEALTH_PATH}" if name == "app" else f"{urls[name]}/v2/health/ready"
                wait_until(lambda url=health: http_ok(url), timeout=SERVER_START_TIMEOUT, what=name, proc=proc,
                           log_path=root / f"{name}.log")
            yield Platform(mlflow_url, urls["champion"], urls["challenger"], urls["xray"], urls["app"], version,
                           [p.pid for p in procs])
        finally:
            for proc in reversed(procs):
                stop_process(proc)


def artifacts_dir() -> Path:
    """Screenshots of every page: kept after the run (CI uploads .local/test-artifacts)."""
    folder = Path(os.environ.get("SLUICE_TEST_ARTIFACTS", REPO_ROOT / ".local" / "test-artifacts")) / "app"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
