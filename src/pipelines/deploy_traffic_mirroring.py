"""Serve champion and challenger side by side with a share of the traffic mirrored to the challenger.

On Kubernetes: both InferenceServices, an InferenceGraph (Sequence: challenger as a Soft step,
champion answering the original request) and an Istio VirtualService (`mirror` with
`mirrorPercentage`). Locally: both model servers plus the router running the same objects, its
prediction log in `<local_run_dir>/predictions.jsonl`. Callers always get the champion's answer.
`use_case` "xray" mirrors the image model the same way in the cluster (locally only the tabular one).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on
from pipelines._deploy import REF_PATTERN as _REF_PATTERN
from pipelines._deploy import smoke_test, wait_ready


@dag(
    dag_id="deploy_traffic_mirroring",
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    max_active_runs=1,
    tags=["sluice", "deploy", "serving", "mirroring"],
    doc_md=__doc__,
    params={
        "champion_ref": Param(
            "champion", type="string", pattern=_REF_PATTERN, title="Champion alias or version",
            description="The version that answers every request.",
        ),
        "challenger_ref": Param(
            "challenger", type="string", pattern=_REF_PATTERN, title="Challenger alias or version",
            description="The version that receives the mirrored copies.",
        ),
        "mirror_percent": Param(
            100.0, type="number", minimum=0, maximum=100, title="Mirrored share (%)",
            description="Share of requests copied to the challenger (Istio mirrorPercentage).",
        ),
        "use_case": Param(
            "wachttijden", type="string", enum=["wachttijden", "xray"], title="Use case",
            description="Whose champion and challenger (tasks.deploy.use_cases).",
        ),
    },
)
def deploy_traffic_mirroring():
    @task
    def resolve(role: str, params: dict | None = None) -> dict:
        from tasks.deploy import steps
        from tasks.registry import TrackingServerUnavailable

        with no_retry_on(TrackingServerUnavailable):  # MLflow down: fail now, naming its URL
            return steps.resolve_version(load_settings(), params[f"{role}_ref"], params["use_case"])

    @task
    def serve(champion: dict, challenger: dict, params: dict | None = None) -> dict:
        from tasks.deploy import steps

        return steps.serve_mirroring(load_settings(), champion, challenger, float(params["mirror_percent"]),
                                     params["use_case"])

    champion = resolve.override(task_id="resolve_champion")("champion")
    challenger = resolve.override(task_id="resolve_challenger")("challenger")
    # Two servers and a router (or two InferenceServices and the routing objects): more time than one.
    smoke_test(wait_ready.override(execution_timeout=timedelta(minutes=20))(serve(champion, challenger)))


deploy_traffic_mirroring()
