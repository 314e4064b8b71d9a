"""Serve one registered model version (alias or version number) on KServe or locally, then smoke-test it.

Runs by itself after every new champion (the `wachttijden_champion` asset event that train_model's
promote task and promote_model emit) with the default `model_ref` "champion", and by hand with any
alias or version. One run at a time: runs queue behind each other, and each serves what the alias
points at when it starts, so the newest champion is what stays served.

Target and ports come from the Airflow Variables read by `tasks.config.Settings` (`deploy_target`
"kubernetes" applies a ServingRuntime and an InferenceService in `kserve_namespace`; "local" starts
the model server on `local_inference_port`). Re-running converges: same version, no change.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on
from pipelines.assets import CHAMPION_WACHTTIJDEN


@dag(
    dag_id="deploy_model",
    schedule=[CHAMPION_WACHTTIJDEN],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    # Two runs at once would race on the same InferenceService or local port; an asset-triggered run
    # and a manual one queue instead.
    max_active_runs=1,
    tags=["sluice", "deploy", "serving"],
    doc_md=__doc__,
    params={
        "model_ref": Param(
            "champion",
            type="string",
            # An MLflow alias (letters, digits, '_' and '-') or a version number.
            pattern=r"^[A-Za-z0-9_-]+$",
            title="Model alias or version",
            description="Registered model alias (e.g. champion, challenger) or version number (e.g. 3).",
        ),
    },
)
def deploy_model():
    @task
    def resolve(params: dict | None = None) -> dict:
        from tasks.deploy import steps
        from tasks.registry import TrackingServerUnavailable

        with no_retry_on(TrackingServerUnavailable):  # MLflow down: fail now, naming its URL
            return steps.resolve_version(load_settings(), params["model_ref"])

    @task
    def serve(resolved: dict) -> dict:
        from tasks.deploy import steps

        return steps.serve_model(load_settings(), resolved)

    @task(execution_timeout=timedelta(minutes=15))
    def wait_ready(deployment: dict) -> dict:
        from tasks.deploy import steps

        return steps.wait_until_ready(load_settings(), deployment)

    @task
    def smoke_test(deployment: dict) -> dict:
        from tasks.deploy import steps

        return steps.smoke_test(deployment)

    smoke_test(wait_ready(serve(resolve())))


deploy_model()
