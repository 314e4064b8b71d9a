"""The local target: champion, challenger and the mirroring router as detached processes on 127.0.0.1."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.deploy import processes
from tasks.deploy.deployment import Deployment
from tasks.deploy.manifests import mirror_routing, referenced_services, to_yaml
from tasks.deploy.names import isvc_name
from tasks.deploy.smoke import infer_path
from tasks.deploy.supervise import supervised

if TYPE_CHECKING:
    from tasks.config import Settings
    from tasks.registry import ResolvedVersion

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SRC_DIR = PROJECT_ROOT / "src"
MODEL_SERVER_MODULE = "serving.model_server"
ROUTER_MODULE = "serving.router"

# A local service is named after its role (state file <local_run_dir>/<name>.json). The champion
# keeps the plain name "model" so deploy_model and deploy_traffic_mirroring share one server on
# one port. The router stops first, so it never forwards to a server that is already gone.
CHAMPION = processes.Role("model")
CHALLENGER = processes.Role("challenger")
ROUTER = processes.Role("router", stop_order=-1)
CHALLENGER_PORT_OFFSET = 2
READY_TIMEOUT_S = 180.0
# Which of the builders' mirroring objects the router runs, by design name.
SPEC_FILES = {"inferencegraph": "inferencegraph-mirror.yaml", "virtualservice": "virtualservice-mirror.yaml"}


def run_dir(settings: Settings) -> Path:
    """Where the local services keep state files, logs, specs and the prediction log."""
    return settings.resolve_path(settings.local_run_dir, PROJECT_ROOT)


def _env(settings: Settings) -> dict[str, str]:
    # src/ on the path so `python -m serving.*` finds the package whatever the cwd.
    python_path = os.pathsep.join(p for p in (str(SRC_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "PYTHONPATH": python_path}


def _python(settings: Settings) -> str:
    return str(settings.resolve_path(settings.local_serving_python, PROJECT_ROOT))


def _ensure(
    settings: Settings, role: processes.Role, cmd: list[str], *, port: int, meta: dict[str, Any]
) -> dict[str, Any]:
    """Start the service under the supervisor unless the same command already runs; replace it when it differs.

    A crashed server or router comes back by itself (with backoff, a few times), so recovering
    from a crash never needs the pipelines to run again.
    """
    folder = run_dir(settings)
    service, started = processes.ensure(
        folder, role.name, supervised(_python(settings), role.name, folder, cmd),
        port=port, env=_env(settings), cwd=PROJECT_ROOT, meta=meta, role=role,
    )
    return {"name": role.name, "role": role.name, "url": service.url, "pid": service.pid, "started": started, **meta}


def model_server_command(settings: Settings, model_version: str, port: int) -> list[str]:
    """The local model server command for one registered version (loopback only)."""
    return [
        _python(settings),
        "-m",
        MODEL_SERVER_MODULE,
        "--model-uri",
        f"models:/{settings.model_name}/{model_version}",
        "--model-name",
        settings.model_name,
        "--model-version",
        str(model_version),
        "--http-port",
        str(port),
        "--host",
        "127.0.0.1",
        # One file for champion, challenger and router: the shadow report joins them by request id.
        "--prediction-log",
        str(run_dir(settings) / "predictions.jsonl"),
    ]


def champion_role(use_case: str) -> processes.Role:
    """The local service of a use case's champion (tasks.deploy.use_cases: "model" for the tabular one)."""
    from tasks.deploy.use_cases import use_case as find

    name = find(use_case).local_service
    return CHAMPION if name == CHAMPION.name else processes.Role(name)


def start_model_server(
    settings: Settings, version: ResolvedVersion, *, role: processes.Role = CHAMPION, port: int | None = None
) -> dict[str, Any]:
    """Serve a resolved version on a loopback port (local_inference_port by default)."""
    port = port or settings.local_inference_port
    meta = {"model": settings.model_name, "version": version.version, "port": port}
    return _ensure(settings, role, model_server_command(settings, version.version, port), port=port, meta=meta)


def write_mirror_specs(settings: Settings, mirror_percent: float) -> dict[str, Path]:
    """Write the builders' InferenceGraph and VirtualService for the router: design name -> file."""
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    routing = mirror_routing(
        model_name=settings.model_name, namespace=settings.kserve_namespace, mirror_percent=mirror_percent
    )
    paths = {}
    for design, file_name in SPEC_FILES.items():
        paths[design] = folder / f"mirror-{design}.yaml"
        paths[design].write_text(to_yaml(routing[file_name]))
    return paths


def router_command(
    settings: Settings, spec: Path, champion_url: str, challenger_url: str, *, port: int | None = None
) -> list[str]:
    """The local router command: the spec's service names resolved to the local servers."""
    import yaml

    champion = isvc_name(settings.model_name)
    resolve = []
    for service in referenced_services(yaml.safe_load(spec.read_text())):
        # Graph steps name InferenceServices; VirtualService hosts name their predictor Services.
        is_champion = service in (champion, f"{champion}-predictor")
        resolve += ["--resolve", f"{service}={champion_url if is_champion else challenger_url}"]
    return [
        _python(settings),
        "-m",
        ROUTER_MODULE,
        "--spec",
        str(spec),
        *resolve,
        "--host",
        "127.0.0.1",
        "--port",
        str(port or settings.local_router_port),
        "--prediction-log",
        str(run_dir(settings) / "predictions.jsonl"),
        # Graph steps call the local servers under this model name (not the InferenceService's).
        "--target-model-name",
        settings.model_name,
    ]


def serve_model(settings: Settings, champion: ResolvedVersion, *, use_case: str = "wachttijden") -> Deployment:
    """Start (or keep) the champion's model server on local_inference_port (the use case's port: see
    tasks.deploy.use_cases.settings_for), as the use case's own service."""
    role = champion_role(use_case)
    return Deployment(
        target="local",
        model_name=settings.model_name,
        entry=role.name,
        entry_path=infer_path(settings.model_name),
        versions={"champion": champion.to_dict()},
        services=(start_model_server(settings, champion, role=role),),
        use_case=use_case,
    )


def serve_mirroring(
    settings: Settings,
    champion: ResolvedVersion,
    challenger: ResolvedVersion,
    mirror_percent: float,
    *,
    design: str = "virtualservice",
    use_case: str = "wachttijden",
) -> Deployment:
    """Champion on local_inference_port, challenger two ports up, router on local_router_port.

    The router runs the VirtualService by default (it carries mirror_percent and mirrors
    fire-and-forget, like Envoy); design="inferencegraph" runs the Sequence graph instead.
    """
    if champion_role(use_case) != CHAMPION:
        # The local router, challenger and their ports (8082, 8083) belong to the tabular model; in the
        # cluster every use case gets its own InferenceGraph and VirtualService (deploy_target=kubernetes).
        raise ValueError(f"local mirroring serves the tabular model only, not {use_case!r}; "
                         "mirror it with deploy_target=kubernetes")
    champion_port = settings.local_inference_port
    challenger_port = champion_port + CHALLENGER_PORT_OFFSET
    if len({champion_port, challenger_port, settings.local_router_port}) != 3:
        raise ValueError("local_inference_port, its +2 challenger port and local_router_port must differ")
    servers = [
        start_model_server(settings, champion, role=CHAMPION, port=champion_port),
        start_model_server(settings, challenger, role=CHALLENGER, port=challenger_port),
    ]
    spec = write_mirror_specs(settings, mirror_percent)[design]
    meta = {
        "model": settings.model_name,
        "design": design,
        "mirror_percent": float(mirror_percent),
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "port": settings.local_router_port,
    }
    # The router is restarted whenever either version or the spec changes (meta/cmd differ).
    cmd = router_command(settings, spec, servers[0]["url"], servers[1]["url"])
    router = _ensure(settings, ROUTER, cmd, port=settings.local_router_port, meta=meta)
    return Deployment(
        target="local",
        model_name=settings.model_name,
        entry=ROUTER.name,
        entry_path=infer_path(settings.model_name),
        challenger=CHALLENGER.name,
        versions={"champion": champion.to_dict(), "challenger": challenger.to_dict()},
        services=(*servers, router),
    )


def wait(settings: Settings, deployment: Deployment, *, timeout: float = READY_TIMEOUT_S) -> Deployment:
    """Wait until each model server says its model is ready and the router answers HTTP; add the URLs."""
    deadline = time.monotonic() + timeout
    for entry in deployment.services:
        service = processes.load(run_dir(settings), entry["name"])
        if service is None:
            raise RuntimeError(f"local service {entry['name']!r} is not recorded in {run_dir(settings)}")
        if service.role == ROUTER:
            # Any HTTP answer means the router listens; the smoke test through it proves the routing.
            url, ready = f"{service.url}/v2/health/ready", (lambda code: code is not None)
        else:
            # Model servers have KServe's per-model readiness.
            url, ready = f"{service.url}/v2/models/{deployment.model_name}/ready", (lambda code: code == 200)
        processes.wait_until_ready(service, url, timeout=max(deadline - time.monotonic(), 0), ready=ready)
    return deployment.replace(urls={s["name"]: s["url"] for s in deployment.services})
