"""Retraining on new data, through Airflow (dag.test): prepare_dataset finds new raw files under date
partitions in a local data lake, prepares each content once, checks it for drift against the champion,
and ends quietly when nothing is new (no partition, no dataset event, so train_model does not run).

Every run here uses the params' defaults, which is all that a scheduled run gets."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.smtp import smtp_server
from tests.tasks.drift_data import base_frame, register_champion, shifted, to_csv_bytes

pytestmark = pytest.mark.slow
DAY = "wachttijden/2026/11/{:02d}/wachttijden.csv"


def load_dag(dag_id: str = "prepare_dataset"):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    assert not bag.import_errors
    return bag.dags[dag_id]


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def dataset_events(run) -> list[dict]:
    """The extras of the dataset events that a prepare_dataset run emitted (what starts train_model)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(
            AssetEvent.source_dag_id == "prepare_dataset", AssetEvent.source_run_id == run.run_id)).all()
        return [dict(event.extra) for event in events]


@pytest.fixture(scope="module")
def platform(airflow_db, mlflow_server, tmp_path_factory):
    """A fresh local lake, the test MLflow server, a model name of its own, and a schedules file that
    gives the DAG a cron schedule and no watching (so a run with nothing new ends at its first look)."""
    from mlflow import MlflowClient

    from tasks.data.datalake import open_datalake
    from tests.conftest import isolate_mlflow_client, reset_mlflow_client

    root = tmp_path_factory.mktemp("retraining")
    schedules = root / "schedules.json"
    schedules.write_text(json.dumps({"prepare_dataset": {"schedule": "*/15 * * * *", "watch_minutes": 0}}))
    model = f"retraining-{uuid.uuid4().hex[:8]}"
    env = {
        "AIRFLOW_VAR_DATALAKE_URL": str(root / "lake"),
        "AIRFLOW_VAR_MLFLOW_TRACKING_URI": mlflow_server,
        "AIRFLOW_VAR_MODEL_NAME": model,
        "AIRFLOW_VAR_RAW_FILE": "",
        "AIRFLOW_VAR_DRIFT_MODE": "warn",
        "SLUICE_SCHEDULES_FILE": str(schedules),
    }
    with pytest.MonkeyPatch.context() as mp, smtp_server() as mail:
        isolate_mlflow_client(mp, mlflow_server)
        # Drift warnings are mailed: a real SMTP server on 127.0.0.1 receives them.
        env |= {"AIRFLOW_VAR_ALERT_EMAILS": "data-team@example.org", "AIRFLOW_CONN_SMTP_DEFAULT": mail.connection_uri}
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield {"lake": open_datalake(str(root / "lake")), "client": MlflowClient(mlflow_server), "model": model,
                   "root": root, "mail": mail}
        finally:
            reset_mlflow_client()


@pytest.fixture(scope="module")
def runs(platform):
    """First file prepared (no champion yet), the champion registered on it, a second file with shifted
    data dropped the next day, then the same content again under a third day."""
    from tasks.data.prepare import partition_for

    lake = platform["lake"]
    lake.write_bytes("raw", DAY.format(1), to_csv_bytes(base_frame()))
    first = load_dag().test()
    # What train_model and its lineage tags would leave behind: a champion trained on the first partition.
    register_champion(platform["client"], tag_partition=partition_for(first.run_id), name=platform["model"])
    shifted_bytes = to_csv_bytes(shifted(base_frame(), seed=21))
    lake.write_bytes("raw", DAY.format(2), shifted_bytes)
    second = load_dag().test()
    lake.write_bytes("raw", DAY.format(3), shifted_bytes)
    again = load_dag().test()
    return {"first": first, "second": second, "again": again}


def test_the_schedule_and_the_watch_come_from_the_schedules_file(platform, monkeypatch):
    dag = load_dag()
    assert dag.timetable.expression == "*/15 * * * *" and dag.max_active_runs == 1
    assert dag.params["watch_minutes"] == 0
    other = platform["root"] / "hourly.json"
    other.write_text(json.dumps({"prepare_dataset": {"schedule": "0 * * * *", "watch_minutes": 45}}))
    monkeypatch.setenv("SLUICE_SCHEDULES_FILE", str(other))
    dag = load_dag()
    assert dag.timetable.expression == "0 * * * *" and dag.params["watch_minutes"] == 45


def test_a_malformed_schedules_file_fails_the_dag_import_naming_the_file(platform, monkeypatch):
    from airflow.dag_processing.dagbag import BundleDagBag

    broken = platform["root"] / "broken.json"
    broken.write_text(json.dumps({"prepare_dataset": {"schedule": "", "watch_minutes": 5}}))
    monkeypatch.setenv("SLUICE_SCHEDULES_FILE", str(broken))
    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    (error,) = [e for path, e in bag.import_errors.items() if path.endswith("prepare_dataset.py")]
    assert str(broken) in error and "schedule string or null" in error


def test_the_first_file_under_a_date_partition_is_prepared_without_a_drift_check(runs, platform):
    from tasks.data.prepare import complete_partitions, partition_for

    run = runs["first"]
    assert run.state == "success" and states(run)["split"] == "success"
    assert run.get_task_instance("wait_for_raw_file").xcom_pull(task_ids="wait_for_raw_file") == DAY.format(1)
    assert partition_for(run.run_id) in complete_partitions(platform["lake"])
    drift = run.get_task_instance("validate").xcom_pull(task_ids="validate")["drift"]
    assert drift["status"] == "skipped" and "is the champion yet" in drift["summary"]


def test_a_second_file_with_shifted_data_is_picked_up_checked_for_drift_and_starts_training(runs, platform):
    from tasks.data import ledger
    from tasks.data.drift_check import drift_tag
    from tasks.data.prepare import complete_partitions, partition_for

    run = runs["second"]
    partition = partition_for(run.run_id)
    assert run.state == "success" and states(run)["split"] == "success"
    assert run.get_task_instance("wait_for_raw_file").xcom_pull(task_ids="wait_for_raw_file") == DAY.format(2)
    assert complete_partitions(platform["lake"]) == sorted([partition_for(runs["first"].run_id), partition])
    shifted_sha = ledger.content_digest(platform["lake"].read_bytes("raw", DAY.format(2)))
    assert dataset_events(run) == [{"partition": partition, "raw_file": DAY.format(2), "raw_sha256": shifted_sha}]
    drift = run.get_task_instance("validate").xcom_pull(task_ids="validate")["drift"]
    assert drift["status"] == "warn" and drift["drifted"][0].startswith("TYPE_WACHTTIJD: PSI ")
    assert drift["reference"]["partition"] == partition_for(runs["first"].run_id)
    report = json.loads(platform["lake"].read_bytes("intermediate", f"wachttijden/{partition}/drift.json"))
    assert report["status"] == "warn"
    tags = platform["client"].get_model_version(platform["model"], "1").tags
    assert tags[drift_tag(partition)].startswith("warn: TYPE_WACHTTIJD: PSI ")


def test_the_same_content_again_prepares_nothing_and_emits_no_dataset_event(runs, platform):
    from tasks.data.prepare import complete_partitions, partition_for

    run = runs["again"]
    assert run.state == "success"
    assert states(run) == {"wait_for_raw_file": "skipped", "check_new": "skipped", "validate": "skipped",
                           "clean": "skipped", "split": "skipped"}
    assert dataset_events(run) == []
    assert complete_partitions(platform["lake"]) == sorted(
        partition_for(runs[k].run_id) for k in ("first", "second"))


def test_a_raw_file_named_explicitly_still_goes_through_the_ledger_check(runs):
    run = load_dag().test(run_conf={"raw_file": DAY.format(3)})
    assert run.state == "success"
    assert states(run)["wait_for_raw_file"] == "success" and states(run)["check_new"] == "skipped"
    assert dataset_events(run) == []


def test_a_run_keeps_looking_in_reschedule_mode_and_takes_a_file_that_lands_meanwhile(runs, platform):
    """The sensor looks, hands its worker slot back (up_for_reschedule), and looks again a poke later."""
    import threading

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from tests.support.processes import wait_until
    from tests.tasks.drift_data import resampled

    def rescheduled() -> bool:
        with create_session() as session:
            return session.scalar(select(TaskInstance.run_id).where(
                TaskInstance.dag_id == "prepare_dataset", TaskInstance.task_id == "wait_for_raw_file",
                TaskInstance.state == TaskInstanceState.UP_FOR_RESCHEDULE)) is not None

    def drop_file_once_the_sensor_waits() -> None:
        wait_until(rescheduled, timeout=300, what="the sensor to hand back its slot")
        platform["lake"].write_bytes("raw", DAY.format(5), to_csv_bytes(resampled(base_frame(), seed=23)))

    dropper = threading.Thread(target=drop_file_once_the_sensor_waits)
    dropper.start()
    run = load_dag().test(run_conf={"watch_minutes": 5})
    dropper.join()

    assert run.state == "success" and states(run)["split"] == "success"
    assert run.get_task_instance("wait_for_raw_file").xcom_pull(task_ids="wait_for_raw_file") == DAY.format(5)
    assert run.get_task_instance("validate").xcom_pull(task_ids="validate")["drift"]["status"] == "ok"


def test_fail_mode_stops_the_run_with_the_reason_and_later_runs_pass_the_file_by(runs, platform, monkeypatch):
    from tasks.data.prepare import partition_for

    monkeypatch.setenv("AIRFLOW_VAR_DRIFT_MODE", "fail")
    platform["lake"].write_bytes("raw", DAY.format(4), to_csv_bytes(shifted(base_frame(), seed=22, weeks=10)))

    stopped = load_dag().test()

    assert stopped.state == "failed"
    validate = stopped.get_task_instance("validate")
    assert validate.state == "failed" and validate.try_number == 1  # no retry: the data will not change
    assert states(stopped)["split"] != "success" and dataset_events(stopped) == []
    report = json.loads(platform["lake"].read_bytes(
        "intermediate", f"wachttijden/{partition_for(stopped.run_id)}/drift.json"))
    assert report["status"] == "fail" and report["features"]["TYPE_WACHTTIJD"]["drifted"]
    # The next run (a schedule's) does not fail on the same file again.
    after = load_dag().test()
    assert after.state == "success" and states(after)["wait_for_raw_file"] == "skipped"


def test_a_drift_warning_is_mailed_once_naming_the_run_file_and_feature(runs, platform):
    warnings = [m for m in platform["mail"].messages if "drift warning" in m.subject]
    assert len(warnings) == 1, [m.subject for m in platform["mail"].messages]
    (mail,) = warnings
    assert runs["second"].run_id in mail.subject and DAY.format(2) in mail.subject
    assert mail.rcpt_tos == ["data-team@example.org"]
    assert "TYPE_WACHTTIJD: PSI" in mail.text and "drift.html" in mail.text
