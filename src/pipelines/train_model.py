"""train_model: train candidate models in parallel on a prepared partition, log them to MLflow, register the best."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines._common import (
    DEFAULT_ARGS,
    fail_without_retry,
    load_settings,
    no_retry_on,
    open_lake,
    train_executor_config,
)
from pipelines.assets import PREPROCESSED_WACHTTIJDEN


@dag(
    dag_id="train_model",
    schedule=[PREPROCESSED_WACHTTIJDEN],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    params={
        "partition": Param(
            None, type=["null", "string"], pattern=r"^run=[A-Za-z0-9._-]+$",
            description="Preprocessed partition to train on; empty: the triggering one, else the newest.",
        ),
    },
    tags=["wachttijden", "training"],
    doc_md=__doc__,
)
def train_model():
    @task
    def choose_partition(params=None, triggering_asset_events=None) -> str:
        from tasks.data.prepare import complete_partitions

        if params.get("partition"):
            return params["partition"]
        for events in (triggering_asset_events or {}).values():
            for event in reversed(list(events)):
                if event.extra.get("partition"):
                    return event.extra["partition"]
        partitions = complete_partitions(open_lake(load_settings()))
        if not partitions:
            raise fail_without_retry(ValueError("no complete partition in preprocessed/: run prepare_dataset first"))
        return partitions[-1]

    @task
    def plan_candidates() -> list[dict]:
        from tasks.training.train import candidates_from_config

        with no_retry_on(ValueError):
            return candidates_from_config(load_settings().train_config)

    @task(executor_config=train_executor_config(), retries=1)
    def train_candidate(candidate: dict, partition: str, run_id=None, dag_run=None) -> dict:
        from tasks.registry import TrackingServerUnavailable
        from tasks.training.device import GpuUnavailable
        from tasks.training.train import train_candidate as train

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable, GpuUnavailable):
            return train(
                open_lake(settings), partition, candidate, tracking_uri=settings.mlflow_tracking_uri,
                tags={"airflow_run_id": run_id, "airflow_dag_id": dag_run.dag_id}, require_gpu=settings.require_gpu,
            )

    @task
    def register_best(results: list[dict]) -> dict:
        from tasks.registry import TrackingServerUnavailable
        from tasks.registry import register_best as register

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable):
            return register(list(results), tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)

    partition = choose_partition()
    results = train_candidate.partial(partition=partition).expand(candidate=plan_candidates())
    register_best(results)


train_model()
