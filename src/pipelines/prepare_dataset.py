"""prepare_dataset: wait for the raw file, validate it, clean it, split it into the run's own partition."""

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
    def split(run_id=None, outlet_events=None) -> dict:
        from tasks.data.prepare import partition_for, split_clean

        summary = split_clean(open_lake(load_settings()), partition_for(run_id))
        outlet_events[PREPROCESSED_WACHTTIJDEN].extra = {"partition": summary["partition"]}
        return summary

    validate(wait_for_raw_file()) >> clean() >> split()


prepare_dataset()
