"""The deploy DAG of a use case, built once: resolve -> serve -> wait -> smoke test of one registered version.

deploy_model (wachttijden) and deploy_xray are this DAG with another use case and champion asset
(thin DAG files); every step is `tasks.deploy.steps`, where `use_case` picks the registered model,
the local port and service and the smoke request (tasks.deploy.use_cases).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on

# An MLflow alias (letters, digits, '_' and '-') or a version number.
REF_PATTERN = r"^[A-Za-z0-9_-]+$"


# The last two steps of every deploy DAG (deploy_traffic_mirroring's too): the Deployment carries its use case.
@task(execution_timeout=timedelta(minutes=15))
def wait_ready(deployment: dict) -> dict:
    from tasks.deploy import steps

    return steps.wait_until_ready(load_settings(), deployment)


@task
def smoke_test(deployment: dict) -> dict:
    from tasks.deploy import steps

    return steps.smoke_test(deployment)


def deploy_dag(*, dag_id: str, use_case: str, champion: Asset, doc_md: str | None):
    """The DAG serving `use_case`'s registered model; runs after each event of its `champion` asset."""

    @dag(
        dag_id=dag_id,
        schedule=[champion],
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        default_args=DEFAULT_ARGS,
        # Two runs at once would race on the same InferenceService or local port; an asset-triggered run
        # and a manual one queue instead.
        max_active_runs=1,
        tags=["sluice", "deploy", "serving", use_case],
        doc_md=doc_md,
        params={
            "model_ref": Param(
                "champion",
                type="string",
                pattern=REF_PATTERN,
                title="Model alias or version",
                description="Registered model alias (e.g. champion, challenger) or version number (e.g. 3).",
            ),
        },
    )
    def deploy():
        @task
        def resolve(params: dict | None = None) -> dict:
            from tasks.deploy import steps
            from tasks.registry import TrackingServerUnavailable

            with no_retry_on(TrackingServerUnavailable):  # MLflow down: fail now, naming its URL
                return steps.resolve_version(load_settings(), params["model_ref"], use_case)

        @task
        def serve(resolved: dict) -> dict:
            from tasks.deploy import steps

            return steps.serve_model(load_settings(), resolved, use_case)

        smoke_test(wait_ready(serve(resolve())))

    return deploy()
