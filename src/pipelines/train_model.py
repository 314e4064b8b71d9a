"""train_model: train candidates in parallel on a prepared partition, register the best as `challenger`,
then let the evaluation gate decide whether it replaces `champion`.

- **evaluate** scores the challenger and the current champion on the same rows (the partition's test
  split) and records the decision on the challenger's model version (tags `sluice.gate.*`) and as a
  report beside its run (`gate/report.{md,html,json}`); it mails the decision to `alert_emails`.
  Promote only when there is no champion yet, or the challenger's MAE is lower by `promotion_margin`
  and no slice (each TYPE_WACHTTIJD and ROAZ_REGIO value with at least `promotion_min_slice_rows`
  test rows) is worse by more than `promotion_slice_tolerance`.
- **promote** (skipped when the gate says keep) moves `champion`, leaves the replaced one as
  `previous-champion`, and emits the `wachttijden_champion` asset event that runs deploy_model.

Every run and version carries its lineage (tasks.lineage: partition, raw file hash, git commit,
Airflow run ids). The `train_config` param replaces the train_config Variable for one run.
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
from pipelines.assets import CHAMPION_WACHTTIJDEN, PREPROCESSED_WACHTTIJDEN

# The DAG folder's checkout: its commit is the code that trained the model (git-sync keeps it a git repository).
CODE_FOLDER = Path(__file__).resolve().parent


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
        "train_config": Param(
            None, type=["null", "object"],
            description='Replaces the train_config Variable for this run (same shape, e.g. {"epochs": 3, '
                        '"candidates": [{"name": "small", "hidden_units": [16]}]}); empty: the Variable.',
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
    def collect_lineage(partition: str, triggering_asset_events=None, run_id=None, dag_run=None) -> dict:
        from tasks.lineage import lineage_tags

        # The dataset event that announced this partition names the prepare run (and, when
        # prepare_dataset puts it there, the raw file's hash); otherwise the ledger does.
        extra, prepare_run_id = {}, None
        for events in (triggering_asset_events or {}).values():
            for event in events:
                if (event.extra or {}).get("partition") == partition:
                    extra, prepare_run_id = dict(event.extra), event.source_run_id
        return lineage_tags(
            open_lake(load_settings()), partition, dag_id=dag_run.dag_id, run_id=run_id, code_folder=CODE_FOLDER,
            event_extra=extra, prepare_run_id=prepare_run_id,
        )

    @task
    def plan_candidates(params=None) -> list[dict]:
        from tasks.training.train import candidates_from_config

        train_config = params.get("train_config") or load_settings().train_config
        with no_retry_on(ValueError, TypeError):
            return candidates_from_config(train_config)

    @task(executor_config=train_executor_config(), retries=1)
    def train_candidate(candidate: dict, partition: str, lineage: dict, run_id=None, dag_run=None) -> dict:
        from tasks.registry import TrackingServerUnavailable
        from tasks.training.device import GpuUnavailable
        from tasks.training.train import train_candidate as train

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable, GpuUnavailable):
            return train(
                open_lake(settings), partition, candidate, tracking_uri=settings.mlflow_tracking_uri,
                tags={"airflow_run_id": run_id, "airflow_dag_id": dag_run.dag_id, **lineage},
                require_gpu=settings.require_gpu,
            )

    @task
    def register_best(results: list[dict], lineage: dict) -> dict:
        from tasks.registry import TrackingServerUnavailable
        from tasks.registry import register_best as register

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable):
            return register(
                list(results), tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name, tags=lineage
            )

    @task
    def evaluate(registered: dict, partition: str, run_id=None, dag_run=None) -> dict:
        from tasks.alerts import send_alert
        from tasks.evaluation.evaluate import evaluate_challenger
        from tasks.evaluation.gate import GateRules
        from tasks.evaluation.report import alert_message
        from tasks.registry import TrackingServerUnavailable

        settings = load_settings()
        with no_retry_on(ValueError):  # a promotion_* Variable out of range
            rules = GateRules.of(settings)
        with no_retry_on(TrackingServerUnavailable):
            result = evaluate_challenger(
                open_lake(settings), partition, tracking_uri=settings.mlflow_tracking_uri,
                model_name=registered["model_name"], challenger_version=registered["version"], rules=rules,
                airflow_run=f"{dag_run.dag_id}/{run_id}",
            )
        subject, body = alert_message(result, dag_id=dag_run.dag_id, run_id=run_id)
        send_alert(subject, body, settings=settings)  # never raises; nobody to mail: nothing sent
        return result

    @task(outlets=[CHAMPION_WACHTTIJDEN])
    def promote(evaluation: dict, run_id=None, dag_run=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.evaluation.promotion import promote as move
        from tasks.registry import StaleChampion, TrackingServerUnavailable

        if not evaluation["promote"]:
            # Skipped: no asset event, so nothing is deployed; the decision is on the model version.
            raise AirflowSkipException(f"champion kept: {evaluation['reason']}")
        settings = load_settings()
        with no_retry_on(StaleChampion, TrackingServerUnavailable):
            moved = move(
                tracking_uri=settings.mlflow_tracking_uri, model_name=evaluation["model_name"],
                version=evaluation["challenger_version"], expected_champion=evaluation["champion_version"],
                reason=f"evaluation gate: {evaluation['reason']}", promoted_by=f"{dag_run.dag_id}/{run_id}",
            )
        outlet_events[CHAMPION_WACHTTIJDEN].extra = moved
        return moved

    partition = choose_partition()
    lineage = collect_lineage(partition)
    results = train_candidate.partial(partition=partition, lineage=lineage).expand(candidate=plan_candidates())
    promote(evaluate(register_best(results, lineage), partition))


train_model()
