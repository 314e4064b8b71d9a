"""Moving `champion`: after the gate said promote, or by hand (a version number, or back to `previous-champion`).

Every move leaves the replaced champion as `previous-champion`, tags the new champion with who
promoted it and why, and returns the extra of the asset event that makes deploy_model serve it.
"""

from __future__ import annotations

from typing import Any

from tasks.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version, move_champion, require_tracking_server

PROMOTED_BY_TAG = "sluice.promotion.by"
PROMOTION_REASON_TAG = "sluice.promotion.reason"


class NothingToPromote(ValueError):
    """The requested promotion names no version: no previous champion to roll back to, or a bad choice of params."""


def choose_version(
    *, tracking_uri: str, model_name: str, version: str | None = None, rollback: bool = False
) -> dict[str, Any]:
    """The version a manual promotion would make champion, and the champion it would replace.

    Exactly one of `version` (a number) and `rollback` (the version behind `previous-champion`).
    Resolved once, in its own step, so a retried move does not roll back twice.
    """
    if bool(version) == bool(rollback):
        raise NothingToPromote("give either a version number or rollback=true (not both, not neither)")
    require_tracking_server(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    champion = alias_version(client, model_name, CHAMPION)
    if rollback:
        target = alias_version(client, model_name, PREVIOUS_CHAMPION)
        if target is None:
            raise NothingToPromote(f"{model_name} has no {PREVIOUS_CHAMPION} alias: there is nothing to roll back to")
        reason = f"rollback from version {champion} to the {PREVIOUS_CHAMPION}"
    else:
        from mlflow.exceptions import MlflowException

        try:
            target = str(client.get_model_version(model_name, str(version)).version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise NothingToPromote(f"{model_name} has no version {version}") from exc
        reason = f"manual promotion of version {target} (replacing {champion or 'no champion'})"
    return {"model_name": model_name, "version": target, "champion_version": champion, "reason": reason}


def promote(
    *, tracking_uri: str, model_name: str, version: str, expected_champion: str | None, reason: str, promoted_by: str
) -> dict[str, Any]:
    """Make `version` the champion if the champion is still `expected_champion` (else StaleChampion).

    Returns the asset event's extra: model_name, version, previous_version, moved, reason.
    """
    require_tracking_server(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    moved = move_champion(client, model_name, str(version), expected_champion=expected_champion)
    if moved["moved"]:
        client.set_model_version_tag(model_name, str(version), PROMOTED_BY_TAG, promoted_by[:5000])
        client.set_model_version_tag(model_name, str(version), PROMOTION_REASON_TAG, reason[:5000])
    return {
        "model_name": model_name,
        "version": moved["champion"],
        "previous_version": moved["previous_champion"],
        "moved": moved["moved"],
        "reason": reason,
    }

