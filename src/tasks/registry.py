"""The pipelines' side of the MLflow model registry: look-ups and alias moves from models.registry, and
registering the best run."""

from __future__ import annotations

from typing import Any

from models.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ResolvedVersion,
    StaleChampion,
    TrackingServerUnavailable,
    alias_version,
    check_tracking_server,
    limit_client_retries,
    move_champion,
    require_tracking_server,
    resolve,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "ResolvedVersion",
    "StaleChampion",
    "TrackingServerUnavailable",
    "alias_version",
    "check_tracking_server",
    "limit_client_retries",
    "move_champion",
    "register_best",
    "require_tracking_server",
    "resolve",
]


def register_best(
    results: list[dict[str, Any]], *, tracking_uri: str, model_name: str, tags: dict[str, str] | None = None,
    metric: str = "mae", higher_is_better: bool = False,
    description: str = "Waiting time (weeks) per care type and region.",
) -> dict[str, Any]:
    """Register the candidate with the best validation `metric` (lowest MAE by default; the image use
    case takes the highest AUC) and give it the `challenger` alias.

    `champion` is never touched here: only a promotion moves it (tasks.evaluation, or the
    promote_model DAG). `tags` (the lineage) are set on the version. Re-running for the same run
    reuses its version instead of adding one.
    """
    if not results:
        raise ValueError("no trained candidates to choose from")
    require_tracking_server(tracking_uri)

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    choose = max if higher_is_better else min
    best = choose(results, key=lambda r: r["validation"][metric])
    client = MlflowClient(tracking_uri)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description=description)
    existing = client.search_model_versions(f"name='{model_name}' and run_id='{best['run_id']}'")
    version_tags = {"candidate": best["candidate"], f"validation_{metric}": f"{best['validation'][metric]:.4f}",
                    **(tags or {})}
    if existing:
        version = existing[0]
        for key, value in version_tags.items():
            client.set_model_version_tag(model_name, version.version, key, value)
    else:
        # mlflow.register_model links the version to the logged model (models:/m-...), which
        # the low-level create_model_version only does when given the model id as well.
        mlflow.set_tracking_uri(tracking_uri)
        version = mlflow.register_model(best["model_uri"], model_name, tags=version_tags)
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return {"model_name": model_name, "version": str(version.version), "aliases": [CHALLENGER], "best": best}
