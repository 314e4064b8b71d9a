"""The training DAG of a use case, built once: choose the partition -> collect its lineage -> plan candidates ->
train each (mapped, on the GPU pool) -> register the best as `challenger` -> evaluate it against `champion`
(the gate) -> promote.

train_model (wachttijden) and train_images (xray) are this DAG with another use case, assets and task ids for
the plan and train steps (thin DAG files); what differs by use case (dataset, registered model, candidates,
training, metric, gate rules and scoring) is tasks.lifecycle's.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Asset, Param, dag, task

from pipelines._common import (
    DAG_DEFAULTS,
    fail_without_retry,
    load_settings,
    no_retry_on,
    open_lake,
    train_executor_config,
)

# The DAG folder's checkout: its commit is the code that trained the model (git-sync keeps it a git repository).
CODE_FOLDER = Path(__file__).resolve().parent


def choose_partition_task(use_case: str):
    """The partition to train on: the `partition` param, else the triggering dataset event's, else the newest."""

    @task
    def choose_partition(params=None, triggering_asset_events=None) -> str:
        from tasks.data.prepare import complete_partitions
        from tasks.lifecycle import use_case as lookup

        if params.get("partition"):
            return params["partition"]
        for events in (triggering_asset_events or {}).values():
            for event in reversed(list(events)):
                if event.extra.get("partition"):
                    return event.extra["partition"]
        case = lookup(use_case)
        partitions = complete_partitions(open_lake(load_settings()), case.dataset)
        if not partitions:
            raise fail_without_retry(ValueError(
                f"no complete partition in preprocessed/{case.dataset}/: run {case.prepare_dag} first"))
        return partitions[-1]

    return choose_partition


def collect_lineage_task(use_case: str):
    """The lineage tags (tasks.lineage) of models trained on the chosen partition by this run."""

    @task
    def collect_lineage(partition: str, triggering_asset_events=None, run_id=None, dag_run=None) -> dict:
        from tasks.lifecycle import use_case as lookup
        from tasks.lineage import lineage_tags

        # The dataset event that announced this partition names the prepare run (and the raw content's
        # hash); otherwise the ledger does.
        extra, prepare_run_id = {}, None
        for events in (triggering_asset_events or {}).values():
            for event in events:
                if (event.extra or {}).get("partition") == partition:
                    extra, prepare_run_id = dict(event.extra), event.source_run_id
        return lineage_tags(
            open_lake(load_settings()), partition, dag_id=dag_run.dag_id, run_id=run_id, code_folder=CODE_FOLDER,
            event_extra=extra, prepare_run_id=prepare_run_id, dataset=lookup(use_case).dataset,
        )

    return collect_lineage


def register_best_task(use_case: str):
    """Register the candidate with the best validation metric as `challenger` (never touches `champion`)."""

    @task
    def register_best(results: list[dict], lineage: dict) -> dict:
        from tasks.lifecycle import use_case as lookup
        from tasks.registry import TrackingServerUnavailable
        from tasks.registry import register_best as register

        settings, case = load_settings(), lookup(use_case)
        with no_retry_on(TrackingServerUnavailable):
            return register(
                list(results), tracking_uri=settings.mlflow_tracking_uri, model_name=case.model_name(settings),
                tags=lineage, metric=case.metric, higher_is_better=case.higher_is_better,
                description=case.description,
            )

    return register_best


def evaluate_task(use_case: str):
    """The gate: score challenger and champion on the partition's test split, record the decision, mail it."""

    @task
    def evaluate(registered: dict, partition: str, run_id=None, dag_run=None) -> dict:
        from tasks.alerts import send_alert
        from tasks.evaluation.evaluate import evaluate_challenger
        from tasks.evaluation.report import alert_message
        from tasks.lifecycle import use_case as lookup
        from tasks.registry import TrackingServerUnavailable

        settings, case = load_settings(), lookup(use_case)
        with no_retry_on(ValueError):  # a promotion margin Variable out of range
            rules = case.gate_rules(settings)
        with no_retry_on(TrackingServerUnavailable):
            result = evaluate_challenger(
                open_lake(settings), partition, tracking_uri=settings.mlflow_tracking_uri,
                model_name=registered["model_name"], challenger_version=registered["version"], rules=rules,
                airflow_run=f"{dag_run.dag_id}/{run_id}", scoring=case.scoring(),
            )
        subject, body = alert_message(result, dag_id=dag_run.dag_id, run_id=run_id)
        send_alert(subject, body, settings=settings)  # never raises; nobody to mail: nothing sent
        return result

    return evaluate


def promote_task(champion: Asset):
    """Move `champion` when the gate said promote and emit `champion` (what the deploy DAG runs on);
    skipped otherwise: no asset event, so nothing is deployed, and the decision is on the model version."""

    @task(outlets=[champion])
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
        outlet_events[champion].extra = moved
        return moved

    return promote


def plan_task(use_case: str, task_id: str):
    """The candidates' settings: the `train_config` param, else the use case's train config Variable."""

    @task(task_id=task_id)
    def plan(params=None) -> list[dict]:
        from tasks.lifecycle import use_case as lookup

        case = lookup(use_case)
        with no_retry_on(ValueError, TypeError):  # a typo in the config fails here, not in every training task
            return case.candidates(params.get("train_config") or case.train_config(load_settings()))

    return plan


def train_task(use_case: str, task_id: str):
    """Train, score and log one candidate to MLflow (mapped: one task per candidate, on the GPU node pool)."""

    @task(task_id=task_id, executor_config=train_executor_config(), retries=1)
    def train(candidate: dict, partition: str, lineage: dict, run_id=None, dag_run=None) -> dict:
        from tasks.lifecycle import use_case as lookup
        from tasks.registry import TrackingServerUnavailable
        from tasks.training.device import GpuUnavailable

        settings = load_settings()
        with no_retry_on(TrackingServerUnavailable, GpuUnavailable):
            return lookup(use_case).train(
                open_lake(settings), partition, candidate, tracking_uri=settings.mlflow_tracking_uri,
                tags={"airflow_run_id": run_id, "airflow_dag_id": dag_run.dag_id, **lineage},
                require_gpu=settings.require_gpu,
            )

    return train


def training_dag(
    *, dag_id: str, use_case: str, preprocessed: Asset, champion: Asset, plan_task_id: str, train_task_id: str,
    train_config_example: str, doc_md: str | None,
):
    """The DAG training `use_case` on each event of its `preprocessed` asset; promote emits `champion`."""

    @dag(
        dag_id=dag_id,
        schedule=[preprocessed],
        **DAG_DEFAULTS,
        params={
            "partition": Param(
                None, type=["null", "string"], pattern=r"^run=[A-Za-z0-9._-]+$",
                description="Preprocessed partition to train on; empty: the triggering one, else the newest.",
            ),
            "train_config": Param(
                None, type=["null", "object"],
                description=f"Replaces the train config Variable for this run (same shape, e.g. {train_config_example}"
                            "); empty: the Variable.",
            ),
        },
        tags=[use_case, "training"],
        doc_md=doc_md,
    )
    def training():
        partition = choose_partition_task(use_case)()
        lineage = collect_lineage_task(use_case)(partition)
        candidates = plan_task(use_case, plan_task_id)()
        results = train_task(use_case, train_task_id).partial(partition=partition, lineage=lineage).expand(
            candidate=candidates)
        registered = register_best_task(use_case)(results, lineage)
        promote_task(champion)(evaluate_task(use_case)(registered, partition))

    return training()
