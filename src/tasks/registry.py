"""The pipelines' side of the MLflow model registry: look-ups from models.registry, and registering the best run."""

from __future__ import annotations

from typing import Any

from models.registry import (
    ResolvedVersion,
    TrackingServerUnavailable,
    check_tracking_server,
    limit_client_retries,
    require_tracking_server,
    resolve,
)

__all__ = [
    "ResolvedVersion",
    "TrackingServerUnavailable",
    "check_tracking_server",
    "limit_client_retries",
    "register_best",
    "require_tracking_server",
    "resolve",
]


def register_best(results: list[dict[str, Any]], *, tracking_uri: str, model_name: str) -> dict[str, Any]:
    """Register the candidate with the lowest validation MAE and give it the `challenger` alias.

    The first model ever registered also becomes `champion`; after that only the evaluation
    gate moves `champion`. Re-running for the same run reuses its version instead of adding one.
    """
    if not results:
        raise ValueError("no trained candidates to choose from")
    require_tracking_server(tracking_uri)

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    best = min(results, key=lambda r: r["validation"]["mae"])
    client = MlflowClient(tracking_uri)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description="Waiting time (weeks) per care type and region.")
    existing = client.search_model_versions(f"name='{model_name}' and run_id='{best['run_id']}'")
    if existing:
        version = existing[0]
    else:
        # mlflow.register_model links the version to the logged model (models:/m-...), which
        # the low-level create_model_version only does when given the model id as well.
        mlflow.set_tracking_uri(tracking_uri)
        version = mlflow.register_model(
            best["model_uri"], model_name,
            tags={"candidate": best["candidate"], "validation_mae": f"{best['validation']['mae']:.4f}"},
        )
    client.set_registered_model_alias(model_name, "challenger", version.version)
    aliases = ["challenger"]
    try:
        client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        client.set_registered_model_alias(model_name, "champion", version.version)
        aliases.append("champion")
    return {"model_name": model_name, "version": str(version.version), "aliases": aliases, "best": best}
