"""The deploy steps the DAGs run (resolve, serve, wait, smoke-test) on the target the settings name.

Each step takes and returns plain dicts, the form XCom carries between tasks; the whole-deploy
functions at the end run the same steps in one process and return the Deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.deploy import kubernetes, local
from tasks.deploy.deployment import Deployment
from tasks.deploy.smoke import smoke_test as _smoke
from tasks.registry import ResolvedVersion, require_tracking_server, resolve

if TYPE_CHECKING:
    from tasks.config import Settings


@dataclass(frozen=True)
class Target:
    """What a deploy target does for each step."""

    serve_model: Callable[[Settings, ResolvedVersion], Deployment]
    serve_mirroring: Callable[[Settings, ResolvedVersion, ResolvedVersion, float], Deployment]
    wait: Callable[[Settings, Deployment], Deployment]


TARGETS: dict[str, Target] = {
    "local": Target(local.serve_model, local.serve_mirroring, local.wait),
    "kubernetes": Target(kubernetes.serve_model, kubernetes.serve_mirroring, kubernetes.wait),
}


def target(name: str) -> Target:
    """The implementation of a `deploy_target` setting."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"deploy_target must be one of {sorted(TARGETS)}, not {name!r}") from None


def resolve_version(settings: Settings, model_ref: str | int) -> dict[str, str]:
    """The registered version behind an alias ("champion") or a version number ("3")."""
    # A tracking server that is down fails here at once, naming its URL, instead of after
    # minutes of client retries per call.
    require_tracking_server(settings.mlflow_tracking_uri)
    return resolve(settings.model_name, model_ref, tracking_uri=settings.mlflow_tracking_uri).to_dict()


def serve_model(settings: Settings, champion: Mapping[str, str]) -> dict[str, Any]:
    """Create or update the serving of one resolved version."""
    return target(settings.deploy_target).serve_model(settings, ResolvedVersion(**champion)).to_dict()


def serve_mirroring(
    settings: Settings, champion: Mapping[str, str], challenger: Mapping[str, str], mirror_percent: float = 100.0
) -> dict[str, Any]:
    """Champion + challenger + the mirroring of a share of the champion's traffic to the challenger."""
    if not 0 <= float(mirror_percent) <= 100:
        raise ValueError(f"mirror_percent must be within 0..100, not {mirror_percent}")
    run = target(settings.deploy_target).serve_mirroring
    return run(settings, ResolvedVersion(**champion), ResolvedVersion(**challenger), float(mirror_percent)).to_dict()


def wait_until_ready(settings: Settings, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """Wait for the deployment on its target; returns it with `urls`."""
    served = Deployment.from_dict(deployment)
    return target(served.target).wait(settings, served).to_dict()


def smoke_test(deployment: Mapping[str, Any], body: Mapping[str, Any] | None = None) -> dict[str, list[float]]:
    """Predict the sample rows through the entry point (and the challenger directly): name -> predictions."""
    return _smoke(Deployment.from_dict(deployment), body)


def deploy_model(
    settings: Settings, model_ref: str | int = "champion", *, body: Mapping[str, Any] | None = None
) -> Deployment:
    """Resolve, serve, wait and smoke-test one model version (`body` replaces the sample request)."""
    ready = wait_until_ready(settings, serve_model(settings, resolve_version(settings, model_ref)))
    return Deployment.from_dict(ready).replace(predictions=smoke_test(ready, body))


def deploy_traffic_mirroring(
    settings: Settings,
    champion_ref: str | int = "champion",
    challenger_ref: str | int = "challenger",
    mirror_percent: float = 100.0,
    *,
    body: Mapping[str, Any] | None = None,
) -> Deployment:
    """Serve champion and challenger with the challenger receiving mirrored traffic; smoke-test both."""
    champion = resolve_version(settings, champion_ref)
    challenger = resolve_version(settings, challenger_ref)
    ready = wait_until_ready(settings, serve_mirroring(settings, champion, challenger, mirror_percent))
    return Deployment.from_dict(ready).replace(predictions=smoke_test(ready, body))
