"""prepare_dataset: wait for the raw file, skip content prepared before, validate, clean, split into a partition."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on, open_lake
from pipelines.assets import PREPROCESSED_WACHTTIJDEN


@dag(
    dag_id="prepare_dataset",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    params={
        "raw_file": Param(
            None, type=["null", "string"], pattern=r"^[^/].*\.csv$",
            description="Path in the raw container; empty uses the raw_file Variable.",
        ),
        "reprocess": Param(False, type="boolean", description="Prepare the file even if its content was before."),
    },
    tags=["wachttijden", "data"],
    doc_md=__doc__,
)
def prepare_dataset():
    @task.sensor(poke_interval=15, timeout=6 * 3600, mode="reschedule")
    def wait_for_raw_file(params=None):
        from airflow.sdk import PokeReturnValue

        settings = load_settings()
        raw_file = params.get("raw_file") or settings.raw_file
        return PokeReturnValue(is_done=open_lake(settings).exists("raw", raw_file), xcom_value=raw_file)

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
        from tasks.data.prepare import partition_for, validate_raw
        from tasks.data.validation import DataValidationError

        with no_retry_on(DataValidationError):
            return validate_raw(open_lake(load_settings()), raw_file, partition_for(run_id))

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
        outlet_events[PREPROCESSED_WACHTTIJDEN].extra = {"partition": summary["partition"]}
        return summary

    validated = validate(check_new(wait_for_raw_file()))
    validated >> clean() >> split(validated)


prepare_dataset()
