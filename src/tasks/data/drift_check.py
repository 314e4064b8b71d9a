"""validate's drift check: the new data against the data the champion was trained on.

The reference is the train split of the champion's preprocessed partition, named by the model
version's lineage tag `sluice.data.partition` or, for versions registered before that tag, by the
`partition` parameter that training logs on the version's run. No champion, no partition or a
partition this lake does not hold: nothing is compared, and the report says why.

Where the report lands: `intermediate/<dataset>/<partition>/drift.{json,html}` beside the validation
report, and, when a comparison was made, as artifacts of a run of its own in the MLflow experiment
`<model>-drift` (apart from the training experiment, whose runs are all candidates, as the shadow
comparison keeps its own). Drift above a threshold is recorded on the champion version as the tag
`sluice.drift.<partition>`, and then either warns (the run goes on; the status is in the task's
return value for a notifier) or, in fail mode, stops the run with the report as the reason.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data import ledger
from tasks.data.datalake import DataLake
from tasks.data.drift import MODES, Thresholds, compare, render_html, summary
from tasks.data.prepare import DATASET, partition_path, read_split
from tasks.data.validation import clean, validate
from tasks.registry import TrackingServerUnavailable, require_tracking_server, resolve

PARTITION_TAG = "sluice.data.partition"
RAW_SHA_TAG = "sluice.data.raw_sha256"
DRIFT_TAG_PREFIX = "sluice.drift."
REPORT_JSON, REPORT_HTML = "drift.json", "drift.html"


class DriftDetected(ValueError):
    """Drift above a threshold in fail mode: the message names each feature and its PSI (or the target's KS)."""


@dataclass(frozen=True)
class DriftConfig:
    mode: str
    thresholds: Thresholds
    model_name: str
    tracking_uri: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"drift_mode {self.mode!r} is not one of {', '.join(MODES)}")

    @classmethod
    def of(cls, settings: Any) -> DriftConfig:
        """From tasks.config.Settings."""
        thresholds = Thresholds(
            psi=settings.drift_psi_threshold, ks_statistic=settings.drift_ks_threshold,
            ks_alpha=settings.drift_ks_alpha,
        )
        return cls(settings.drift_mode.strip().lower(), thresholds, settings.model_name, settings.mlflow_tracking_uri)


def drift_tag(partition: str) -> str:
    """The champion version's tag for a comparison with `partition` (MLflow keys take no '=')."""
    return DRIFT_TAG_PREFIX + re.sub(r"[^\w.\-]", "_", partition)


def current_rows(lake: DataLake, partition: str) -> pd.DataFrame:
    """The rows of the new file that pass validation, cleaned as `clean` will (from what validate kept)."""
    source = partition_path(partition, "validated.parquet")
    frame = pd.read_parquet(io.BytesIO(lake.read_bytes("intermediate", source)))
    _, valid = validate(frame, f"intermediate/{source}")
    return clean(frame, valid)


def champion_reference(config: DriftConfig) -> tuple[dict[str, Any] | None, str]:
    """(the champion's version and training partition, "") or (None, why there is nothing to compare with)."""
    try:
        require_tracking_server(config.tracking_uri)
    except TrackingServerUnavailable as exc:
        if config.mode == "fail":
            raise  # fail mode promises the check ran; it cannot
        return None, f"no drift check: {exc}"
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(config.tracking_uri)
    try:
        champion = resolve(config.model_name, "champion", client=client)
    except MlflowException:
        return None, f"no drift check: no version of model {config.model_name!r} is the champion yet"
    tags = client.get_model_version(config.model_name, champion.version).tags
    partition, source = tags.get(PARTITION_TAG), f"the model version's tag {PARTITION_TAG}"
    if not partition and champion.run_id:
        run = client.get_run(champion.run_id)
        partition = run.data.params.get("partition") or run.data.tags.get("partition")
        source = f"the parameter 'partition' of its training run {champion.run_id}"
    if not partition:
        return None, (
            f"no drift check: champion version {champion.version} of {config.model_name!r} names no training "
            f"partition (no {PARTITION_TAG} tag, no 'partition' parameter on its run)"
        )
    return {
        "model": config.model_name, "version": champion.version, "run_id": champion.run_id,
        "partition": partition, "partition_source": source,
    }, ""


def check_drift(lake: DataLake, validated: dict[str, Any], partition: str, config: DriftConfig) -> dict[str, Any]:
    """Compare, write the report into the partition (and MLflow), and return a summary for the task's XCom.

    Raises DriftDetected in fail mode when something crossed its threshold, after the report is
    written and the content is recorded as rejected in the ledger (a schedule does not retry it).
    """
    report: dict[str, Any] = {
        "status": "skipped", "mode": config.mode, "raw_file": validated["raw_file"], "sha256": validated["sha256"],
        "partition": partition, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    reference, reason = (None, "no drift check: drift_mode is off") if config.mode == "off" else (
        champion_reference(config))
    if reference is not None:
        try:
            reference_rows = read_split(lake, reference["partition"], "train")
        except FileNotFoundError as exc:
            reference, reason = None, f"no drift check: the champion's training data is not in this lake ({exc})"
    if reference is None:
        report["reason"] = reason
    else:
        report["reference"] = reference
        report.update(compare(reference_rows, current_rows(lake, partition), features=FEATURES, target=TARGET,
                              thresholds=config.thresholds))
        report["status"] = ("fail" if config.mode == "fail" else "warn") if report["drifted"] else "ok"
        report["mlflow_run_id"] = log_to_mlflow(report, config)
        if report["drifted"]:
            record_on_champion(report, config)
    where = f"intermediate/{DATASET}/{partition}/{REPORT_JSON}"
    lake.write_bytes("intermediate", partition_path(partition, REPORT_JSON),
                     json.dumps(report, indent=1, ensure_ascii=False).encode(), overwrite=True)
    lake.write_bytes("intermediate", partition_path(partition, REPORT_HTML), render_html(report).encode(),
                     overwrite=True)
    if report["status"] == "fail":
        message = (
            f"data drift in raw/{validated['raw_file']} against the training data of {config.model_name} version "
            f"{reference['version']} ({reference['partition']}): {summary(report)}. Report: {where} (and .html). "
            "Nothing was prepared; to prepare it anyway set drift_mode to warn and trigger with raw_file."
        )
        ledger.record_rejected(lake, DATASET, validated["sha256"], raw_file=validated["raw_file"],
                               partition=partition, reason=message)
        raise DriftDetected(message)
    return {
        "status": report["status"], "summary": summary(report), "drifted": report.get("drifted", []),
        "report": where, "mlflow_run_id": report.get("mlflow_run_id"),
        "reference": {k: reference[k] for k in ("model", "version", "partition")} if reference else None,
    }


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by another run
        return client.get_experiment_by_name(name).experiment_id


def log_to_mlflow(report: dict[str, Any], config: DriftConfig) -> str:
    """A run of its own with the scores as metrics and the report as drift.json and drift.html; its id.

    Through MlflowClient, not the fluent API, so the check leaves no active run or experiment behind
    in the task's process.
    """
    from mlflow import MlflowClient

    client = MlflowClient(config.tracking_uri)
    reference = report["reference"]
    run = client.create_run(
        _experiment_id(client, f"{config.model_name}-drift"), run_name=f"drift {report['partition']}",
        tags={
            "sluice.drift.status": report["status"], PARTITION_TAG: report["partition"],
            RAW_SHA_TAG: report["sha256"], "sluice.drift.reference": f"{reference['model']}/{reference['version']}",
        },
    )
    run_id = run.info.run_id
    try:
        for name, value in {"mode": config.mode, "reference_version": reference["version"],
                            "reference_partition": reference["partition"], "raw_file": report["raw_file"],
                            **{f"threshold_{k}": v for k, v in report["thresholds"].items()}}.items():
            client.log_param(run_id, name, value)
        metrics = {f"psi_{name}": result["psi"] for name, result in report["features"].items()}
        metrics |= {"ks_statistic": report["target"]["ks_statistic"], "ks_p_value": report["target"]["p_value"],
                    "rows_reference": report["rows"]["reference"], "rows_current": report["rows"]["current"]}
        for name, value in metrics.items():
            client.log_metric(run_id, name, float(value))
        client.log_dict(run_id, {**report, "mlflow_run_id": run_id}, REPORT_JSON)
        client.log_text(run_id, render_html(report), REPORT_HTML)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def record_on_champion(report: dict[str, Any], config: DriftConfig) -> None:
    """Tag the champion version that was compared against: `sluice.drift.<partition>` = status and what drifted."""
    from mlflow import MlflowClient

    reference = report["reference"]
    value = f"{report['status']}: {summary(report)} (MLflow run {report['mlflow_run_id']})"
    MlflowClient(config.tracking_uri).set_model_version_tag(
        config.model_name, reference["version"], drift_tag(report["partition"]), value[:5000]
    )


def drift_alert(drift: dict[str, Any], *, raw_file: str, run_id: str) -> tuple[str, str] | None:
    """(subject, body) of the mail a drift warning sends, or None when there is nothing to warn about.

    A drift that fails the run is mailed by the failure notifier with the task's error instead.
    """
    if drift.get("status") != "warn":
        return None
    subject = f"prepare_dataset run {run_id}: drift warning for {raw_file}"
    body = "\n".join([
        "DAG:    prepare_dataset",
        f"Run:    {run_id}",
        f"File:   {raw_file}",
        f"Drift:  {drift.get('summary', '')}",
        *(f"  - {finding}" for finding in drift.get("drifted", [])),
        f"Report: {drift.get('report', '')} and {str(drift.get('report', '')).removesuffix('.json')}.html",
        f"MLflow run: {drift.get('mlflow_run_id') or 'none'}",
        "",
        "The run goes on (drift_mode=warn); set drift_mode=fail to stop runs like this one.",
    ])
    return subject, body
