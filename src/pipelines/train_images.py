"""train_images: train the three xray architectures in parallel (mapped tasks on the GPU pool) on a prepared
partition, register the best by validation ROC AUC as `challenger`, and let the evaluation gate decide.

The gate is train_model's (tasks.evaluation) with the xray objective: the challenger replaces `champion`
when there is none yet, or its test-split ROC AUC beats the champion's by `xray_promotion_margin` AUC
points. promote emits `xray_champion`, which the xray deploy DAG runs on. Lineage tags, the
`sluice.device` tag, the gate report and the alert mails are the same as for wachttijden. The
`train_config` param replaces the xray_train_config Variable for one run, e.g.
{"epochs": 3, "architectures": ["small_cnn"]}.
"""

from __future__ import annotations

from pathlib import Path

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
from pipelines.assets import CHAMPION_XRAY, PREPROCESSED_XRAY

CODE_FOLDER = Path(__file__).resolve().parent


@dag(
    dag_id="train_images",
    schedule=[PREPROCESSED_XRAY],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    params={
        "partition": Param(None, type=["null", "string"], pattern=r"^run=[A-Za-z0-9._-]+$",
                           description="Preprocessed xray partition; empty: the triggering one, else the newest."),
        "train_config": Param(None, type=["null", "object"],
                              description="Replaces the xray_train_config Variable for this run."),
    },
    tags=["xray", "training"],
    doc_md=__doc__,
)
def train_images():
    @task
    def choose_partition(params=None, triggering_asset_events=None) -> dict:
        from tasks.data.prepare import complete_partitions
        from tasks.data.prepare_images import DATASET

        for events in (triggering_asset_events or {}).values():
            for event in reversed(list(events)):
                if event.extra.get("partition") and not params.get("partition"):
                    return {"partition": event.extra["partition"], "extra": dict(event.extra),
                            "prepare_run_id": event.source_run_id}
        partitions = [params["partition"]] if params.get("partition") else complete_partitions(
            open_lake(load_settings()), DATASET)
        if not partitions:
            raise fail_without_retry(ValueError("no complete partition in preprocessed/xray/: run prepare_images"))
        return {"partition": partitions[-1], "extra": {}, "prepare_run_id": None}

    @task
    def collect_lineage(chosen: dict, run_id=None, dag_run=None) -> dict:
        from tasks.data.prepare_images import DATASET
        from tasks.lineage import lineage_tags

        return lineage_tags(
            open_lake(load_settings()), chosen["partition"], dag_id=dag_run.dag_id, run_id=run_id,
            code_folder=CODE_FOLDER, event_extra=chosen["extra"], prepare_run_id=chosen["prepare_run_id"],
            dataset=DATASET,
        )

    @task
    def plan_architectures(params=None) -> list[dict]:
        from tasks.training.train_images import candidates_from_config

        with no_retry_on(ValueError, TypeError):
            return candidates_from_config(params.get("train_config") or load_settings().xray_train_config)

    @task(executor_config=train_executor_config(), retries=1)
    def train_architecture(candidate: dict, chosen: dict, lineage: dict, run_id=None, dag_run=None) -> dict:
        from tasks.registry import TrackingServerUnavailable
        from tasks.training.device import GpuUnavailable
        from tasks.training.train_images import train_architecture as train

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable, GpuUnavailable):
            return train(
                open_lake(settings), chosen["partition"], candidate, tracking_uri=settings.mlflow_tracking_uri,
                tags={"airflow_run_id": run_id, "airflow_dag_id": dag_run.dag_id, **lineage},
                require_gpu=settings.require_gpu,
            )

    @task
    def register_best(results: list[dict], lineage: dict) -> dict:
        from tasks.registry import TrackingServerUnavailable, register_best

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable):
            return register_best(
                list(results), tracking_uri=settings.mlflow_tracking_uri, model_name=settings.xray_model_name,
                tags=lineage, metric="auc", higher_is_better=True,
                description="Chest X-ray-like scans: normal vs pneumonia-like (synthetic unless real data is given).",
            )

    @task
    def evaluate(registered: dict, chosen: dict, run_id=None, dag_run=None) -> dict:
        from tasks.alerts import send_alert
        from tasks.evaluation.evaluate import evaluate_challenger
        from tasks.evaluation.report import alert_message
        from tasks.registry import TrackingServerUnavailable
        from tasks.training.train_images import SCORING, gate_rules

        settings = load_settings()
        with no_retry_on(ValueError):
            rules = gate_rules(settings)
        with no_retry_on(TrackingServerUnavailable):
            result = evaluate_challenger(
                open_lake(settings), chosen["partition"], tracking_uri=settings.mlflow_tracking_uri,
                model_name=registered["model_name"], challenger_version=registered["version"], rules=rules,
                airflow_run=f"{dag_run.dag_id}/{run_id}", scoring=SCORING,
            )
        send_alert(*alert_message(result, dag_id=dag_run.dag_id, run_id=run_id), settings=settings)
        return result

    @task(outlets=[CHAMPION_XRAY])
    def promote(evaluation: dict, run_id=None, dag_run=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.evaluation.promotion import promote as move
        from tasks.registry import StaleChampion, TrackingServerUnavailable

        if not evaluation["promote"]:
            raise AirflowSkipException(f"champion kept: {evaluation['reason']}")
        settings = load_settings()
        with no_retry_on(StaleChampion, TrackingServerUnavailable):
            moved = move(
                tracking_uri=settings.mlflow_tracking_uri, model_name=evaluation["model_name"],
                version=evaluation["challenger_version"], expected_champion=evaluation["champion_version"],
                reason=f"evaluation gate: {evaluation['reason']}", promoted_by=f"{dag_run.dag_id}/{run_id}",
            )
        outlet_events[CHAMPION_XRAY].extra = moved
        return moved

    chosen = choose_partition()
    lineage = collect_lineage(chosen)
    results = train_architecture.partial(chosen=chosen, lineage=lineage).expand(candidate=plan_architectures())
    promote(evaluate(register_best(results, lineage), chosen))


train_images()
