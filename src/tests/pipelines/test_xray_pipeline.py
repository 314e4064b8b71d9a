"""The xray image pipeline through Airflow (dag.test) against a real MLflow server and a local data lake.

One story, run once by the module fixture:
1. a few hundred synthetic scans land under raw/xray/2024/05/01/; prepare_images validates them and writes
   its partition of TFRecord shards;
2. train_images trains the three architectures (tiny widths, a few epochs) as mapped tasks, registers the
   best by validation ROC AUC, and the gate promotes it: there is no champion yet (xray_champion emitted);
3. train_images with a deliberately weak train_config (one epoch at a learning rate of 1e-6): the gate
   keeps the champion and says why, and nothing is emitted.
Then (a test of its own) a drop of corrupt files makes a new snapshot that fails prepare_images readably.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from tests.pipelines.test_end_to_end import load_dag

pytestmark = pytest.mark.slow
SCANS = 300
FIRST = {"epochs": 4, "width": 8, "batch_size": 32}
WEAK = {"architectures": ["small_cnn"], "epochs": 1, "width": 4, "learning_rate": 1e-6}


def states(run) -> dict[str, str]:
    """task id -> state; a mapped task's instances as "id[index]"."""
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in run.get_task_instances()}


def asset_events(asset: str, dag_id: str) -> dict[str, dict]:
    """source run id -> extra of the events of `asset` that `dag_id` emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_run_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == asset, AssetEvent.source_dag_id == dag_id)
        ).all()
    return {run_id: dict(extra) for run_id, extra in rows}


@pytest.fixture(scope="module")
def story(airflow_db, mlflow_server, tmp_path_factory):
    from mlflow import MlflowClient

    from tasks.data.datalake import open_datalake
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare import partition_for
    from tasks.registry import CHALLENGER, CHAMPION, alias_version
    from tests.conftest import isolate_mlflow_client, reset_mlflow_client

    root = tmp_path_factory.mktemp("xray-pipeline")
    lake = open_datalake(str(root / "lake"))
    written = write_scans(lake, count=SCANS, seed=21, day=date(2024, 5, 1))
    model = f"xray-{uuid.uuid4().hex[:8]}"  # a registry of its own on the session's server
    env = {
        "AIRFLOW_VAR_DATALAKE_URL": str(root / "lake"),
        "AIRFLOW_VAR_MLFLOW_TRACKING_URI": mlflow_server,
        "AIRFLOW_VAR_XRAY_MODEL_NAME": model,
        # The Variable would train for 10 epochs; each run names its own config in the train_config param.
        "AIRFLOW_VAR_XRAY_TRAIN_CONFIG": json.dumps({"epochs": 1}),
    }
    result: dict = {"lake": lake, "written": written, "model": model, "mlflow": mlflow_server}
    with pytest.MonkeyPatch.context() as mp:
        isolate_mlflow_client(mp, mlflow_server)
        for key, value in env.items():
            mp.setenv(key, value)
        client = MlflowClient(mlflow_server)
        result["client"] = client
        try:
            result["prepare"] = load_dag("prepare_images").test(run_conf={"watch_minutes": 0})
            result["partition"] = partition_for(result["prepare"].run_id)
            for name, config in (("first", FIRST), ("weak", WEAK)):
                result[name] = load_dag("train_images").test(
                    run_conf={"partition": result["partition"], "train_config": config})
                result[f"aliases_after_{name}"] = {
                    alias: alias_version(client, model, alias) for alias in (CHAMPION, CHALLENGER)}
            yield result
        finally:
            reset_mlflow_client()


def test_prepare_images_writes_its_own_partition_and_announces_it(story):
    from tasks.data.prepare import complete_partitions
    from tasks.data.prepare_images import DATASET, read_manifest

    run = story["prepare"]
    assert run.state == "success", states(run)
    assert complete_partitions(story["lake"], DATASET) == [story["partition"]]
    manifest = read_manifest(story["lake"], story["partition"])
    written = story["written"]
    assert manifest["validation"]["accepted"] == written["good"]
    assert manifest["validation"]["dropped"] == {
        "corrupt": written["corrupt"], "duplicate": written["duplicate"], "wrong_mode": written["wrong_mode"]}
    assert sum(split["total"] for split in manifest["splits"].values()) == written["good"]
    assert asset_events("xray_preprocessed", "prepare_images")[run.run_id] == {
        "partition": story["partition"], "raw_sha256": manifest["snapshot_sha256"]}


def test_three_architectures_train_in_parallel_and_the_first_model_is_promoted(story):
    run, model, client = story["first"], story["model"], story["client"]
    assert run.state == "success", states(run)
    trained = {k: v for k, v in states(run).items() if k.startswith("train_architecture[")}
    assert trained == {f"train_architecture[{i}]": "success" for i in range(3)}
    assert story["aliases_after_first"] == {"champion": "1", "challenger": "1"}
    version = client.get_model_version(model, "1")
    tags = version.tags
    assert tags["sluice.gate.decision"] == "promote" and "no champion" in tags["sluice.gate.reason"]
    assert tags["sluice.gate.champion_version"] == "none" and tags["sluice.gate.margin"] == "0.005"
    assert float(tags["sluice.gate.challenger_auc"]) >= 0.8, tags  # it learned: chance is 0.5
    # The best of the three by validation AUC, with the classifier's metrics and its confusion matrix.
    runs = client.search_runs([client.get_run(version.run_id).info.experiment_id],
                              filter_string=f"tags.`sluice.airflow.run_id` = '{run.run_id}'")
    assert {r.info.run_name for r in runs} == {"small_cnn", "mobilenet", "resnet"}
    best = max(runs, key=lambda r: r.data.metrics["validation_auc"])
    assert version.run_id == best.info.run_id and tags["candidate"] == best.info.run_name
    assert {"test_auc", "test_accuracy", "test_precision", "test_recall", "train_images_per_s"} <= set(
        best.data.metrics)
    assert "confusion_matrix.png" in {a.path for a in client.list_artifacts(version.run_id)}
    event = asset_events("xray_champion", "train_images")[run.run_id]
    assert (event["model_name"], event["version"], event["moved"]) == (model, "1", True)


def test_a_weak_train_config_is_kept_out_by_the_gate_with_the_reason(story, tmp_path):
    run, model, client = story["weak"], story["model"], story["client"]
    assert run.state == "success", states(run)
    assert states(run)["evaluate"] == "success" and states(run)["promote"] == "skipped"
    assert story["aliases_after_weak"] == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version(model, "2").tags
    print("weak:", tags["sluice.gate.reason"])  # in the test log
    assert tags["sluice.gate.decision"] == "keep" and tags["sluice.gate.champion_version"] == "1"
    assert "ROC AUC" in tags["sluice.gate.reason"]
    assert "is not higher by the margin of 0.0050" in tags["sluice.gate.reason"]
    assert float(tags["sluice.gate.challenger_auc"]) <= float(tags["sluice.gate.champion_auc"]) + 0.005
    assert tags["sluice.gate.airflow_run"] == f"train_images/{run.run_id}"
    report = Path(client.download_artifacts(client.get_model_version(model, "2").run_id, "gate/report.json",
                                            str(tmp_path)))
    assert json.loads(report.read_text())["decision"] == "keep"
    assert run.run_id not in asset_events("xray_champion", "train_images")


def test_every_version_carries_the_lineage_of_its_image_set(story):
    from tasks.data.prepare_images import read_manifest

    snapshot = read_manifest(story["lake"], story["partition"])["snapshot_sha256"]
    for version, name in (("1", "first"), ("2", "weak")):
        tags = story["client"].get_model_version(story["model"], version).tags
        expected = {
            "sluice.data.partition": story["partition"],
            "sluice.data.raw_sha256": snapshot,
            "sluice.airflow.dag_id": "train_images",
            "sluice.airflow.run_id": story[name].run_id,
            "sluice.airflow.prepare_run_id": story["prepare"].run_id,
        }
        assert {k: tags.get(k) for k in expected} == expected, version
        assert len(tags["sluice.git_commit"]) == 40


def test_a_corrupt_heavy_drop_fails_prepare_images_readably_and_writes_no_partition(story, capfd):
    from tasks.data import ledger
    from tasks.data.prepare import partition_for

    lake = story["lake"]
    before = {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")}
    for i in range(40):  # 40 more unusable files of 340: well over the 5% that may be unusable
        lake.write_bytes("raw", f"xray/2024/05/02/normal/broken-{i:02d}.png", b"\x89PNG\r\n\x1a\n not a scan")
    run = load_dag("prepare_images").test(run_conf={"watch_minutes": 0})
    assert run.state == "failed"
    (prepare,) = [ti for ti in run.get_task_instances() if ti.task_id == "prepare"]
    assert (prepare.state, prepare.try_number) == ("failed", 1)  # bad input: no retry
    written = story["written"]
    bad, total = written["corrupt"] + written["wrong_mode"] + 40, SCANS + 40
    reason = f"{bad} of {total} files ({bad / total:.1%}) are unusable"
    assert reason in capfd.readouterr().out  # the task's failure names it
    partition = partition_for(run.run_id)
    report = lake.read_bytes("intermediate", f"xray/{partition}/validation.txt").decode()
    assert "FAILED" in report and reason in report and "at most 5.0% may be" in report
    assert {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")} == before
    assert run.run_id not in asset_events("xray_preprocessed", "prepare_images")
    _, rejected = ledger.known_digests(lake, "xray")
    assert len(rejected) == 1
    # The rejected set is passed by: the next scheduled look finds nothing new and skips.
    again = load_dag("prepare_images").test(run_conf={"watch_minutes": 0})
    assert again.state == "success" and states(again) == {"wait_for_new_images": "skipped", "prepare": "skipped"}
