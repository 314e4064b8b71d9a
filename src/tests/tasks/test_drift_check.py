"""validate's drift check against a real MLflow server and a local data lake: reference found through the
champion's lineage, report in the partition and in MLflow, warn and fail modes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tasks.data import ledger
from tasks.data.datalake import open_datalake
from tasks.data.drift import Thresholds
from tasks.data.drift_check import PARTITION_TAG, DriftConfig, DriftDetected, check_drift, drift_tag
from tasks.data.prepare import clean_validated, split_clean, validate_raw
from tests.tasks.drift_data import base_frame, register_champion, resampled, shifted, to_csv_bytes

REFERENCE = "run=reference"


@pytest.fixture
def lake(tmp_path):
    """A lake holding the reference partition, prepared from the generated data."""
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", "wachttijden/2026/11/01/wachttijden.csv", to_csv_bytes(base_frame()))
    validate_raw(lake, "wachttijden/2026/11/01/wachttijden.csv", REFERENCE)
    clean_validated(lake, REFERENCE)
    split_clean(lake, REFERENCE)
    return lake


@pytest.fixture
def registry(mlflow_server, mlflow_client_env):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server)


def new_file(lake, frame, partition: str, day: str = "02") -> dict:
    raw_file = f"wachttijden/2026/11/{day}/wachttijden.csv"
    lake.write_bytes("raw", raw_file, to_csv_bytes(frame), overwrite=True)
    return validate_raw(lake, raw_file, partition)


def config(model_name: str, tracking_uri: str, mode: str = "warn") -> DriftConfig:
    return DriftConfig(mode, Thresholds(), model_name, tracking_uri)


def report_in(lake, partition: str) -> dict:
    return json.loads(lake.read_bytes("intermediate", f"wachttijden/{partition}/drift.json"))


def test_an_unshifted_file_is_ok_and_tags_nothing(lake, registry, mlflow_server):
    name = register_champion(registry, tag_partition=REFERENCE)
    validated = new_file(lake, resampled(base_frame(), seed=11), "run=same")

    result = check_drift(lake, validated, "run=same", config(name, mlflow_server))

    assert result["status"] == "ok" and result["drifted"] == []
    assert result["reference"] == {"model": name, "version": "1", "partition": REFERENCE}
    report = report_in(lake, "run=same")
    assert report["status"] == "ok" and report["reference"]["partition_source"].endswith(PARTITION_TAG)
    assert all(f["psi"] < 0.2 for f in report["features"].values())
    assert lake.read_bytes("intermediate", "wachttijden/run=same/drift.html").startswith(b"<!doctype html>")
    assert not any(k.startswith("sluice.drift.") for k in registry.get_model_version(name, "1").tags)
    assert registry.get_run(result["mlflow_run_id"]).data.tags["sluice.drift.status"] == "ok"


def test_a_shifted_file_warns_records_on_the_champion_and_logs_the_report_to_mlflow(
    lake, registry, mlflow_server, tmp_path
):
    name = register_champion(registry, tag_partition=REFERENCE)
    validated = new_file(lake, shifted(base_frame(), seed=12), "run=shifted")

    result = check_drift(lake, validated, "run=shifted", config(name, mlflow_server))

    assert result["status"] == "warn"
    assert any(d.startswith("TYPE_WACHTTIJD: PSI ") for d in result["drifted"])
    assert any(d.startswith("WACHTTIJD: KS D ") for d in result["drifted"])
    assert result["report"] == "intermediate/wachttijden/run=shifted/drift.json"
    tag = registry.get_model_version(name, "1").tags[drift_tag("run=shifted")]
    assert tag.startswith("warn: TYPE_WACHTTIJD: PSI ") and result["mlflow_run_id"] in tag
    run = registry.get_run(result["mlflow_run_id"])
    assert registry.get_experiment(run.info.experiment_id).name == f"{name}-drift"
    assert run.data.metrics["psi_TYPE_WACHTTIJD"] > 0.2 and run.data.params["reference_partition"] == REFERENCE
    assert {"drift.json", "drift.html"} <= {a.path for a in registry.list_artifacts(run.info.run_id)}
    logged = json.loads(Path(registry.download_artifacts(run.info.run_id, "drift.json", str(tmp_path))).read_text())
    assert logged["status"] == "warn" and logged["partition"] == "run=shifted"
    # warn mode goes on: the content is not refused
    assert validated["sha256"] not in ledger.known_digests(lake, "wachttijden")[1]


def test_fail_mode_stops_with_the_feature_and_its_psi_and_the_partition_keeps_the_report(
    lake, registry, mlflow_server
):
    name = register_champion(registry, tag_partition=REFERENCE)
    validated = new_file(lake, shifted(base_frame(), seed=13), "run=stopped")

    with pytest.raises(DriftDetected, match=r"TYPE_WACHTTIJD: PSI \d+\.\d{3} > 0\.2") as stopped:
        check_drift(lake, validated, "run=stopped", config(name, mlflow_server, mode="fail"))

    assert "intermediate/wachttijden/run=stopped/drift.json" in str(stopped.value)
    assert f"{name} version 1 ({REFERENCE})" in str(stopped.value)
    report = report_in(lake, "run=stopped")
    assert report["status"] == "fail" and report["features"]["TYPE_WACHTTIJD"]["drifted"]
    assert lake.exists("intermediate", "wachttijden/run=stopped/drift.html")
    assert registry.get_model_version(name, "1").tags[drift_tag("run=stopped")].startswith("fail: ")
    assert validated["sha256"] in ledger.known_digests(lake, "wachttijden")[1]


def test_without_a_champion_nothing_is_compared_and_the_report_says_why(lake, registry, mlflow_server):
    validated = new_file(lake, shifted(base_frame(), seed=14), "run=first")

    result = check_drift(lake, validated, "run=first", config(f"never-registered-{uuid.uuid4().hex[:6]}",
                                                              mlflow_server, mode="fail"))

    assert result["status"] == "skipped" and "is the champion yet" in result["summary"]
    assert report_in(lake, "run=first")["reason"] == result["summary"]


def test_the_partition_falls_back_to_the_training_runs_parameter(lake, registry, mlflow_server):
    name = register_champion(registry, tag_partition=None, param_partition=REFERENCE)
    validated = new_file(lake, shifted(base_frame(), seed=15), "run=fallback")

    result = check_drift(lake, validated, "run=fallback", config(name, mlflow_server))

    assert result["status"] == "warn" and result["reference"]["partition"] == REFERENCE
    assert "parameter 'partition' of its training run" in report_in(lake, "run=fallback")["reference"][
        "partition_source"]


@pytest.mark.parametrize(
    ("tag", "param", "why"),
    [(None, None, "names no training partition"), ("run=elsewhere", None, "not in this lake")],
)
def test_no_usable_partition_means_no_check_with_the_reason(lake, registry, mlflow_server, tag, param, why):
    name = register_champion(registry, tag_partition=tag, param_partition=param)
    validated = new_file(lake, shifted(base_frame(), seed=16), "run=orphan")

    result = check_drift(lake, validated, "run=orphan", config(name, mlflow_server, mode="fail"))

    assert result["status"] == "skipped" and why in result["summary"]


def test_an_unreachable_tracking_server_skips_in_warn_mode_and_fails_in_fail_mode(lake, mlflow_client_env):
    from tasks.registry import TrackingServerUnavailable
    from tests.support.processes import free_port

    down = f"http://127.0.0.1:{free_port()}"
    validated = new_file(lake, shifted(base_frame(), seed=17), "run=offline")

    result = check_drift(lake, validated, "run=offline", config("wachttijden", down))
    assert result["status"] == "skipped" and down in result["summary"]
    with pytest.raises(TrackingServerUnavailable, match=down):
        check_drift(lake, validated, "run=offline", config("wachttijden", down, mode="fail"))


def test_off_mode_compares_nothing_and_an_unknown_mode_is_refused(lake):
    validated = new_file(lake, shifted(base_frame(), seed=18), "run=off")

    result = check_drift(lake, validated, "run=off", config("wachttijden", "http://127.0.0.1:9", mode="off"))

    assert result["status"] == "skipped" and result["summary"] == "no drift check: drift_mode is off"
    assert report_in(lake, "run=off")["status"] == "skipped"
    with pytest.raises(ValueError, match="drift_mode 'loud' is not one of warn, fail, off"):
        config("wachttijden", "http://unused", mode="loud")
