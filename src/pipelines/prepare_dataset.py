"""prepare_dataset: find a new raw file, skip content prepared before, validate (and check drift), clean, split.

Runs by itself on the schedule in variables/<env>/schedules.json: each run lists raw/<raw_prefix>
(date partitions raw/wachttijden/YYYY/MM/DD/*.csv, or raw/wachttijden/wachttijden.csv) for the oldest
file whose content the ledger does not know, keeps looking for `watch_minutes`, and ends as skipped
(no partition, no dataset event, so nothing trains) when none comes. `raw_file` names one file instead.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on, open_lake
from pipelines._schedules import MAX_WATCH_MINUTES, dag_schedule
from pipelines.assets import PREPROCESSED_WACHTTIJDEN

SCHEDULE = dag_schedule("prepare_dataset")


@dag(
    dag_id="prepare_dataset",
    schedule=SCHEDULE.schedule,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: two runs looking at once would both take the same new file.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "raw_file": Param(
            None, type=["null", "string"], pattern=r"^[^/].*\.csv$",
            description="Path in the raw container; empty: the oldest new file under the raw_prefix Variable.",
        ),
        "reprocess": Param(
            False, type="boolean",
            description="Prepare even if the content was prepared before (without raw_file: the newest file).",
        ),
        "watch_minutes": Param(
            SCHEDULE.watch_minutes, type="integer", minimum=0, maximum=MAX_WATCH_MINUTES,
            description="Without raw_file: how long to keep looking for a new file before the run ends as skipped.",
        ),
    },
    tags=["wachttijden", "data"],
    doc_md=__doc__,
)
def prepare_dataset():
    # Reschedule mode: between looks the task gives its worker slot back. The timeout bounds the
    # wait for a file named by raw_file; runs without one stop after watch_minutes (below).
    @task.sensor(poke_interval=60, timeout=MAX_WATCH_MINUTES * 60, mode="reschedule")
    def wait_for_raw_file(params=None, dag_run=None):
        from datetime import timedelta

        from airflow.sdk import PokeReturnValue, timezone
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.data.arrivals import newest_raw, next_new_raw, nothing_new

        settings = load_settings()
        lake = open_lake(settings)
        if params.get("raw_file"):  # named: wait for it to exist; check_new decides whether it is new
            return PokeReturnValue(is_done=lake.exists("raw", params["raw_file"]), xcom_value=params["raw_file"])
        prefix = settings.raw_file or settings.raw_prefix
        found = (newest_raw if params.get("reprocess") else next_new_raw)(lake, prefix)
        if found is not None:
            return PokeReturnValue(is_done=True, xcom_value=found.path)
        if timezone.utcnow() - dag_run.start_date < timedelta(minutes=params["watch_minutes"]):
            return PokeReturnValue(is_done=False)
        raise AirflowSkipException(nothing_new(lake, prefix))

    @task
    def check_new(raw_file: str, params=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.data.prepare import AlreadyPrepared, check_new_raw

        if params.get("reprocess"):
            return raw_file
        try:
            return check_new_raw(open_lake(load_settings()), raw_file)
        except AlreadyPrepared as exc:
            raise AirflowSkipException(str(exc)) from exc

    @task
    def validate(raw_file: str, run_id=None) -> dict:
        from tasks.alerts import send_alert
        from tasks.data.drift_check import DriftConfig, DriftDetected, check_drift, drift_alert
        from tasks.data.prepare import partition_for, validate_raw
        from tasks.data.validation import DataValidationError
        from tasks.registry import TrackingServerUnavailable

        settings = load_settings()
        lake, partition = open_lake(settings), partition_for(run_id)
        with no_retry_on(ValueError):  # a drift_mode that is not warn, fail or off
            config = DriftConfig.of(settings)
        with no_retry_on(DataValidationError, DriftDetected, TrackingServerUnavailable):
            validated = validate_raw(lake, raw_file, partition)
            drift = check_drift(lake, validated, partition, config)
        alert = drift_alert(drift, raw_file=raw_file, run_id=run_id)
        if alert:
            send_alert(*alert, settings=settings)
        # XCom: {"drift": {"status": "ok" | "warn" | "skipped", "summary": ..., "report": ...}}
        return {**validated, "drift": drift}

    @task
    def clean(run_id=None) -> dict:
        from tasks.data.prepare import clean_validated, partition_for
        from tasks.data.validation import DataValidationError

        with no_retry_on(DataValidationError):
            return clean_validated(open_lake(load_settings()), partition_for(run_id))

    @task(outlets=[PREPROCESSED_WACHTTIJDEN])
    def split(validated: dict, run_id=None, outlet_events=None) -> dict:
        from tasks.data.prepare import partition_for, record_prepared, split_clean

        lake = open_lake(load_settings())
        summary = split_clean(lake, partition_for(run_id))
        record_prepared(lake, validated, summary["partition"], run_id)
        # train_model trains on the partition and tags the model with the raw content it came from.
        outlet_events[PREPROCESSED_WACHTTIJDEN].extra = {
            "partition": summary["partition"], "raw_file": validated["raw_file"], "raw_sha256": validated["sha256"],
        }
        return summary

    validated = validate(check_new(wait_for_raw_file()))
    validated >> clean() >> split(validated)


prepare_dataset()
