"""With MLflow down, every task entry point that talks to it fails within seconds, naming the URL and the fix."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

import models.registry
from tasks import registry
from tasks.data.datalake import open_datalake
from tasks.evaluation.evaluate import evaluate_challenger
from tasks.evaluation.gate import GateRules
from tasks.evaluation.promotion import choose_version, promote
from tasks.monitoring.shadow_report import publish_report
from tasks.registry import TrackingServerUnavailable, register_best, require_tracking_server
from tasks.training.train import DEFAULT_CANDIDATES, train_candidate
from tests.support.processes import free_port

# Far below the ~13 minutes that client retries plus an Airflow retry took; the check itself
# answers in milliseconds when the port refuses connections.
FAIL_FAST_S = 15.0

BEST = {"candidate": "compact", "run_id": "abc", "model_uri": "runs:/abc/model", "validation": {"mae": 1.0}}

ENTRY_POINTS: dict[str, Callable[[str, Path], object]] = {
    "train_candidate": lambda uri, tmp: train_candidate(
        open_datalake(str(tmp / "lake")), "run=absent", asdict(DEFAULT_CANDIDATES[0]), tracking_uri=uri
    ),
    "register_best": lambda uri, tmp: register_best([BEST], tracking_uri=uri, model_name="wachttijden"),
    "publish_report": lambda uri, tmp: publish_report([tmp / "predictions.jsonl"], tracking_uri=uri),
    "evaluate_challenger": lambda uri, tmp: evaluate_challenger(
        open_datalake(str(tmp / "lake")), "run=absent", tracking_uri=uri, model_name="wachttijden",
        challenger_version="2", rules=GateRules(),
    ),
    "choose_version": lambda uri, tmp: choose_version(tracking_uri=uri, model_name="wachttijden", rollback=True),
    "promote": lambda uri, tmp: promote(tracking_uri=uri, model_name="wachttijden", version="2",
                                        expected_champion="1", reason="test", promoted_by="test"),
}


@pytest.fixture
def mlflow_down(mlflow_client_env: None) -> str:
    """A tracking URI on a loopback port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_should_fail_within_seconds_naming_the_server_and_how_to_start_it(mlflow_down, tmp_path, entry_point):
    start = time.monotonic()
    with pytest.raises(TrackingServerUnavailable) as raised:
        ENTRY_POINTS[entry_point](mlflow_down, tmp_path)
    seconds = time.monotonic() - start
    assert seconds < FAIL_FAST_S, f"{entry_point} took {seconds:.1f} s to notice MLflow is down"
    message = str(raised.value)
    assert f"the MLflow tracking server at {mlflow_down} is unreachable" in message
    assert "./deploy-local.sh" in message


def test_should_give_the_client_a_short_retry_budget_unless_the_environment_sets_one(mlflow_down, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    with pytest.raises(TrackingServerUnavailable):
        require_tracking_server(mlflow_down)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == models.registry.MLFLOW_CLIENT_RETRY_BUDGET[
        "MLFLOW_HTTP_REQUEST_TIMEOUT"
    ]


def test_a_tracking_uri_without_a_server_needs_no_check(mlflow_client_env, tmp_path):
    require_tracking_server(f"sqlite:///{tmp_path}/mlflow.db")
    require_tracking_server(str(tmp_path / "mlruns"))


def test_the_pipelines_use_the_one_registry_lookup():
    for name in ("resolve", "ResolvedVersion", "check_tracking_server", "limit_client_retries"):
        assert getattr(registry, name) is getattr(models.registry, name)
