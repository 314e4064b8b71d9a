"""prepare_dataset: find a new raw file, skip content prepared before, validate (and check drift), clean, split.

Runs by itself on the schedule in variables/<env>/schedules.json: each run lists raw/<raw_prefix>
(date partitions raw/wachttijden/YYYY/MM/DD/*.csv, or raw/wachttijden/wachttijden.csv) for the oldest
file whose content the ledger does not know, keeps looking for `watch_minutes`, and ends as skipped
(no partition, no dataset event, so nothing trains) when none comes. `raw_file` names one file instead.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pipelines._common import load_settings, no_retry_on, open_lake
from pipelines._schedules import dag_schedule, prepare_dag_arguments, watching_sensor
from pipelines.assets import PREPROCESSED_WACHTTIJDEN

SCHEDULE = dag_schedule("prepare_dataset")


def _look(params: dict) -> tuple[bool, str] | None:
    """A named raw_file: whether it exists yet; else the oldest new file (with reprocess: the newest file)."""
    from tasks.data.arrivals import newest_raw, next_new_raw

    settings = load_settings()
    lake = open_lake(settings)
    if params.get("raw_file"):  # named: wait for it to exist; check_new decides whether it is new
        return lake.exists("raw", params["raw_file"]), params["raw_file"]
    found = (newest_raw if params.get("reprocess") else next_new_raw)(lake, settings.raw_file or settings.raw_prefix)
    return None if found is None else (True, found.path)


def _nothing_new(params: dict) -> str:
    from tasks.data.arrivals import nothing_new

    settings = load_settings()
    return nothing_new(open_lake(settings), settings.raw_file or settings.raw_prefix)


@dag(
    dag_id="prepare_dataset",
    schedule=SCHEDULE.schedule,
    tags=["wachttijden", "data"],
    doc_md=__doc__,
    **prepare_dag_arguments(
        SCHEDULE,
        params={
            "raw_file": Param(
                None, type=["null", "string"], pattern=r"^[^/].*\.csv$",
                description="Path in the raw container; empty: the oldest new file under the raw_prefix Variable.",
            ),
            "reprocess": Param(
                False, type="boolean",
                description="Prepare even if the content was prepared before (without raw_file: the newest file).",
            ),
        },
        watch_description="Without raw_file: how long to keep looking for a new file before the run ends as skipped.",
    ),
)
def prepare_dataset():
    # The timeout bounds the wait for a file named by raw_file; runs without one stop after watch_minutes.
    wait_for_raw_file = watching_sensor("wait_for_raw_file", _look, _nothing_new)

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
