"""Compare the challenger's mirrored predictions with the champion's and log the report to MLflow."""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pipelines._common import DEFAULT_ARGS, PROJECT_ROOT, fail_without_retry, load_settings, no_retry_on


@dag(
    dag_id="compare_shadow",
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    max_active_runs=1,
    tags=["sluice", "serving", "mirroring"],
    doc_md=__doc__,
    params={
        "log_glob": Param(
            "predictions*.jsonl",
            type="string",
            title="Prediction logs",
            description="File name or glob inside local_run_dir (or an absolute path) of the JSON-lines logs.",
        ),
        "tolerance_weeks": Param(1.0, type="number", minimum=0, title="Agreement tolerance (weeks)"),
    },
)
def compare_shadow():
    @task
    def compare(params: dict | None = None) -> dict:
        from pathlib import Path

        from tasks.monitoring.shadow_report import publish_report
        from tasks.registry import TrackingServerUnavailable

        settings = load_settings()
        run_dir = settings.resolve_path(settings.local_run_dir, PROJECT_ROOT)
        pattern = params["log_glob"]
        paths = [Path(pattern)] if Path(pattern).is_absolute() else sorted(run_dir.glob(pattern))
        if not paths:
            # Nothing to compare yet is not worth retrying: say where the logs were expected.
            raise fail_without_retry(FileNotFoundError(f"no prediction logs match {pattern!r} in {run_dir}"))
        with no_retry_on(TrackingServerUnavailable):
            return publish_report(
                paths,
                tracking_uri=settings.mlflow_tracking_uri,
                tolerance_weeks=float(params["tolerance_weeks"]),
                markdown_path=paths[0].with_name("shadow_report.md"),
            )

    compare()


compare_shadow()
