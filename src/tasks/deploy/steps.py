"""The deploy steps the DAGs run (resolve, serve, wait, smoke-test) on the target the settings name.

Each step takes and returns plain dicts, the form XCom carries between tasks; the whole-deploy
functions at the end run the same steps in one process and return the Deployment. `use_case`
(tasks.deploy.use_cases) picks the registered model, local port and smoke request; the steps are
the same for every use case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.deploy import kubernetes, local
from tasks.deploy.deployment import Deployment
from tasks.deploy.smoke import smoke_test as _smoke
from tasks.deploy.use_cases import TABULAR, settings_for
from tasks.registry import ResolvedVersion, require_tracking_server, resolve

if TYPE_CHECKING:
    from tasks.config import Settings


@dataclass(frozen=True)
class Target:
    """What a deploy target does for each step."""

    # Both also take the keyword use_case (recorded in the Deployment; locally it names the service).
    serve_model: Callable[..., Deployment]
    serve_mirroring: Callable[..., Deployment]
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


def resolve_version(settings: Settings, model_ref: str | int, use_case: str = TABULAR) -> dict[str, str]:
    """The registered version behind an alias ("champion") or a version number ("3")."""
    # A tracking server that is down fails here at once, naming its URL, instead of after
    # minutes of client retries per call.
    require_tracking_server(settings.mlflow_tracking_uri)
    model_name = settings_for(settings, use_case).model_name
    return resolve(model_name, model_ref, tracking_uri=settings.mlflow_tracking_uri).to_dict()


def serve_model(settings: Settings, champion: Mapping[str, str], use_case: str = TABULAR) -> dict[str, Any]:
    """Create or update the serving of one resolved version."""
    run = target(settings.deploy_target).serve_model
    return run(settings_for(settings, use_case), ResolvedVersion(**champion), use_case=use_case).to_dict()


def serve_mirroring(
    settings: Settings, champion: Mapping[str, str], challenger: Mapping[str, str], mirror_percent: float = 100.0,
    use_case: str = TABULAR,
) -> dict[str, Any]:
    """Champion + challenger + the mirroring of a share of the champion's traffic to the challenger."""
    if not 0 <= float(mirror_percent) <= 100:
        raise ValueError(f"mirror_percent must be within 0..100, not {mirror_percent}")
    run = target(settings.deploy_target).serve_mirroring
    return run(settings_for(settings, use_case), ResolvedVersion(**champion), ResolvedVersion(**challenger),
               float(mirror_percent), use_case=use_case).to_dict()


def wait_until_ready(settings: Settings, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """Wait for the deployment on its target; returns it with `urls`."""
    served = Deployment.from_dict(deployment)
    return target(served.target).wait(settings_for(settings, served.use_case), served).to_dict()


def smoke_test(deployment: Mapping[str, Any], body: Mapping[str, Any] | None = None) -> dict[str, list[float]]:
    """Predict the sample rows through the entry point (and the challenger directly): name -> predictions."""
    return _smoke(Deployment.from_dict(deployment), body)


def deploy_model(
    settings: Settings, model_ref: str | int = "champion", *, body: Mapping[str, Any] | None = None,
    use_case: str = TABULAR,
) -> Deployment:
    """Resolve, serve, wait and smoke-test one model version (`body` replaces the sample request)."""
    resolved = resolve_version(settings, model_ref, use_case)
    ready = wait_until_ready(settings, serve_model(settings, resolved, use_case))
    return Deployment.from_dict(ready).replace(predictions=smoke_test(ready, body))


def deploy_traffic_mirroring(
    settings: Settings,
    champion_ref: str | int = "champion",
    challenger_ref: str | int = "challenger",
    mirror_percent: float = 100.0,
    *,
    body: Mapping[str, Any] | None = None,
    use_case: str = TABULAR,
) -> Deployment:
    """Serve champion and challenger with the challenger receiving mirrored traffic; smoke-test both."""
    champion = resolve_version(settings, champion_ref, use_case)
    challenger = resolve_version(settings, challenger_ref, use_case)
    ready = wait_until_ready(settings, serve_mirroring(settings, champion, challenger, mirror_percent, use_case))
    return Deployment.from_dict(ready).replace(predictions=smoke_test(ready, body))
