"""The latest shadow, validation and drift reports: from MLflow runs, and from a local data-lake folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.mlflow_client import Mlflow

# Where the pipelines put them (tasks.monitoring.shadow_report.publish_report, tasks.data.drift_check,
# tasks.data.prepare): experiments named after the model, and folders per partition in the lake.
SHADOW_EXPERIMENT = "{model}-shadow"
DRIFT_EXPERIMENT = "{model}-drift"
PARTITIONS = "intermediate/{model}"


@dataclass(frozen=True)
class Found:
    """A report and where it came from (shown on the page, so a reader can open the original)."""

    report: dict[str, Any]
    where: str


def _latest_run_report(mlflow: Mlflow, experiment: str, artifact: str) -> Found | None:
    """The JSON `artifact` of the newest run in `experiment`, if there is one."""
    run = mlflow.latest_run(experiment)
    if run is None:
        return None
    run_id = run["info"]["run_id"]
    report = mlflow.json_artifact(run_id, artifact)
    return None if report is None else Found(report, f"MLflow run {run_id} (experiment {experiment})")


def latest_shadow_report(mlflow: Mlflow, model: str) -> Found | None:
    return _latest_run_report(mlflow, SHADOW_EXPERIMENT.format(model=model), "shadow_report.json")


def latest_drift_report_in_mlflow(mlflow: Mlflow, model: str) -> Found | None:
    return _latest_run_report(mlflow, DRIFT_EXPERIMENT.format(model=model), "drift.json")


def latest_partition_report(lake: Path, model: str, name: str) -> Found | None:
    """The newest `name` (validation.json, drift.json) of any partition in a local data-lake folder."""
    folder = lake / PARTITIONS.format(model=model)
    candidates = sorted(folder.glob(f"*/{name}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            return Found(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (OSError, ValueError):
            continue  # being written right now: the next one
    return None
