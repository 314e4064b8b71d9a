"""promote_model: make a registered version the champion by hand, or roll back to the previous champion.

Trigger it with `rollback=true` (champion goes back to the version behind `previous-champion`, and the
one rolled back from becomes `previous-champion`, so a second rollback undoes the first) or with
`version` set to a version number. The replaced champion always keeps `previous-champion`. Like a
promotion by the evaluation gate it emits the `wachttijden_champion` asset event, so deploy_model
serves the new champion by itself:

    airflow dags trigger promote_model --conf '{"rollback": true}'
    airflow dags trigger promote_model --conf '{"version": "3"}'
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, load_settings, no_retry_on
from pipelines.assets import CHAMPION_WACHTTIJDEN


@dag(
    dag_id="promote_model",
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    # Two moves of the same alias at once: the second would be decided against a stale champion.
    max_active_runs=1,
    tags=["sluice", "registry", "promotion"],
    doc_md=__doc__,
    params={
        "rollback": Param(
            False, type="boolean", title="Roll back",
            description="Make the version behind the previous-champion alias the champion again.",
        ),
        "version": Param(
            None, type=["null", "string"], pattern=r"^[0-9]+$", title="Version",
            description="Or: the registered version number to make champion (leave rollback off).",
        ),
    },
)
def promote_model():
    @task
    def choose(params=None) -> dict:
        from tasks.evaluation.promotion import NothingToPromote, choose_version
        from tasks.registry import TrackingServerUnavailable

        settings = load_settings()
        # A bad choice or a missing version/alias will not get better by retrying.
        with no_retry_on(NothingToPromote, TrackingServerUnavailable, ValueError):
            return choose_version(
                tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name,
                version=params.get("version"), rollback=bool(params.get("rollback")),
            )

    @task(outlets=[CHAMPION_WACHTTIJDEN])
    def promote(choice: dict, run_id=None, dag_run=None, outlet_events=None) -> dict:
        from tasks.evaluation.promotion import promote as move
        from tasks.registry import StaleChampion, TrackingServerUnavailable

        settings = load_settings()
        with no_retry_on(StaleChampion, TrackingServerUnavailable):
            moved = move(
                tracking_uri=settings.mlflow_tracking_uri, model_name=choice["model_name"], version=choice["version"],
                expected_champion=choice["champion_version"], reason=choice["reason"],
                promoted_by=f"{dag_run.dag_id}/{run_id}",
            )
        outlet_events[CHAMPION_WACHTTIJDEN].extra = moved
        return moved

    promote(choose())


promote_model()
