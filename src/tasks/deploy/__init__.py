"""Deploy task functions: resolve a registered model, serve it on KServe or locally, wait, smoke-test."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.deploy import manifests as kb
from tasks.deploy import processes as local_services
from tasks.deploy.kubernetes import KINDS, apply_all, custom_objects_api, smoke_predict, status_url, wait_ready

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

    from tasks.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SRC_DIR = PROJECT_ROOT / "src"
TESTDATA = SRC_DIR / "tests" / "data" / "testdata.json"

MODEL_SERVER_MODULE = "serving.model_server"
ROUTER_MODULE = "serving.router"
# Local service names (state files <local_run_dir>/<name>.json). The champion keeps the plain
# name "model" so deploy_model and deploy_traffic_mirroring share one server on the same port.
LOCAL_CHAMPION, LOCAL_CHALLENGER, LOCAL_ROUTER = "model", "challenger", "router"
CHALLENGER_PORT_OFFSET = 2

READY_TIMEOUT_S = 600.0
LOCAL_READY_TIMEOUT_S = 180.0

Deployment = dict[str, Any]


# --------------------------------------------------------------------------- MLflow


def resolve_model(settings: Settings, model_ref: str | int = "champion") -> dict[str, str]:
    """A registered model version from an alias ("champion") or a version number ("3")."""
    from mlflow import MlflowClient

    ref = str(model_ref).strip()
    if not ref:
        raise ValueError("model_ref is empty: give an alias (e.g. champion) or a version number")
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.model_name
    if ref.isdigit():
        version = client.get_model_version(name, ref)
    else:
        version = client.get_model_version_by_alias(name, ref)
    return {
        "name": name,
        "ref": ref,
        "version": str(version.version),
        "download_uri": client.get_model_version_download_uri(name, version.version),
        "run_id": version.run_id or "",
    }


def resolve_download_uri(model_name: str, ref: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """(download URI, version) of `ref` for the render CLI; the tracking URI defaults to MLflow's env."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    version = (
        client.get_model_version(model_name, ref)
        if ref.isdigit()
        else client.get_model_version_by_alias(model_name, ref)
    )
    return client.get_model_version_download_uri(model_name, version.version), str(version.version)


def smoke_body(path: Path = TESTDATA) -> dict[str, Any]:
    """The V2 request used to smoke-test every deployment (the tests' sample rows)."""
    return json.loads(path.read_text())


def infer_path(model_name: str) -> str:
    """Open Inference Protocol V2 path of a model."""
    return f"/v2/models/{model_name}/infer"


# --------------------------------------------------------------------------- Kubernetes


def _cluster_options(settings: Settings) -> dict[str, Any]:
    return {
        "service_account": settings.kserve_service_account or None,
        "artifact_root": settings.mlflow_artifacts_destination or None,
        "image": settings.serving_image or kb.serving_image(),
    }


def _storage_uri(resolved: dict[str, str], artifact_root: str | None) -> str:
    return kb.storage_uri_for(resolved["download_uri"], artifact_root=artifact_root)


def kubernetes_model_manifests(settings: Settings, champion: dict[str, str]) -> list[kb.Manifest]:
    """ServingRuntime + champion InferenceService for one resolved model version."""
    opts = _cluster_options(settings)
    manifests = kb.model_manifests(
        model_name=settings.model_name,
        namespace=settings.kserve_namespace,
        image=opts["image"],
        storage_uri=_storage_uri(champion, opts["artifact_root"]),
        service_account=opts["service_account"],
        version=champion["version"],
    )
    return list(manifests.values())


def kubernetes_mirror_manifests(
    settings: Settings, champion: dict[str, str], challenger: dict[str, str], mirror_percent: float
) -> list[kb.Manifest]:
    """Runtime, champion, challenger, InferenceGraph and VirtualService, in apply order."""
    opts = _cluster_options(settings)
    manifests = kb.mirror_manifests(
        model_name=settings.model_name,
        namespace=settings.kserve_namespace,
        image=opts["image"],
        champion_uri=_storage_uri(champion, opts["artifact_root"]),
        challenger_uri=_storage_uri(challenger, opts["artifact_root"]),
        mirror_percent=mirror_percent,
        service_account=opts["service_account"],
        champion_version=champion["version"],
        challenger_version=challenger["version"],
    )
    return list(manifests.values())


def _k8s_deployment(
    settings: Settings,
    manifests: list[kb.Manifest],
    entry: str,
    entry_path: str,
    challenger: str | None = None,
) -> Deployment:
    return {
        "target": "kubernetes",
        "model_name": settings.model_name,
        "namespace": settings.kserve_namespace,
        "objects": [{"kind": m["kind"], "name": m["metadata"]["name"]} for m in manifests],
        # The smoke test posts to urls[entry] + entry_path, and to the challenger directly.
        "entry": entry,
        "entry_path": entry_path,
        "challenger": challenger,
    }


def apply_model_kubernetes(
    settings: Settings, champion: dict[str, str], *, api: CustomObjectsApi | None = None
) -> Deployment:
    """Server-side apply the runtime and the champion InferenceService."""
    manifests = kubernetes_model_manifests(settings, champion)
    apply_all(manifests, api=api or custom_objects_api())
    return _k8s_deployment(
        settings,
        manifests,
        entry=kb.isvc_name(settings.model_name),
        entry_path=infer_path(settings.model_name),
    )


def apply_mirroring_kubernetes(
    settings: Settings,
    champion: dict[str, str],
    challenger: dict[str, str],
    mirror_percent: float,
    *,
    api: CustomObjectsApi | None = None,
) -> Deployment:
    """Server-side apply champion, challenger and both mirroring objects."""
    manifests = kubernetes_mirror_manifests(settings, champion, challenger, mirror_percent)
    apply_all(manifests, api=api or custom_objects_api())
    # KServe's graph router serves the graph on its root URL.
    return _k8s_deployment(
        settings,
        manifests,
        entry=kb.isvc_name(settings.model_name, "mirror"),
        entry_path="",
        challenger=kb.isvc_name(settings.model_name, "challenger"),
    )


def wait_kubernetes(
    deployment: Deployment,
    *,
    timeout: float = READY_TIMEOUT_S,
    api: CustomObjectsApi | None = None,
    poll_interval: float = 5.0,
) -> Deployment:
    """Wait for every object that has a Ready condition; add their in-cluster URLs."""
    api = api or custom_objects_api()
    urls = {}
    for obj in deployment["objects"]:
        if KINDS[obj["kind"]].has_ready:
            ready = wait_ready(
                obj["kind"],
                obj["name"],
                deployment["namespace"],
                timeout,
                api=api,
                poll_interval=poll_interval,
            )
            urls[obj["name"]] = status_url(ready)
    return {**deployment, "urls": urls}


# --------------------------------------------------------------------------- local processes


def _run_dir(settings: Settings) -> Path:
    return settings.resolve_path(settings.local_run_dir, PROJECT_ROOT)


def _local_env(settings: Settings) -> dict[str, str]:
    import os

    # src/ on the path so `python -m serving.*` finds the package whatever the cwd.
    python_path = os.pathsep.join(p for p in (str(SRC_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "PYTHONPATH": python_path}


def ensure_local_service(
    settings: Settings, name: str, cmd: list[str], *, port: int, meta: dict[str, Any]
) -> dict[str, Any]:
    """Start the service unless the same command already runs; replace it when it differs."""
    run_dir = _run_dir(settings)
    current = local_services.status(run_dir, name)
    if current is not None and current.cmd == cmd and current.meta == meta:
        return {"name": name, "url": current.url, "pid": current.pid, "started": False, **meta}
    if current is not None:
        local_services.stop(run_dir, name)
    if local_services.port_in_use(port):
        raise RuntimeError(
            f"port {port} on 127.0.0.1 is taken by a process that is not the recorded {name!r} "
            f"service; stop it or change the port setting"
        )
    service = local_services.start(
        run_dir, name, cmd, port=port, env=_local_env(settings), cwd=PROJECT_ROOT, meta=meta
    )
    return {"name": name, "url": service.url, "pid": service.pid, "started": True, **meta}


def model_server_command(settings: Settings, model_version: str, port: int) -> list[str]:
    """The local model server command for one registered version (loopback only)."""
    python = str(settings.resolve_path(settings.local_serving_python, PROJECT_ROOT))
    return [
        python,
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
        str(_run_dir(settings) / "predictions.jsonl"),
    ]


def start_model_local(
    settings: Settings, resolved: dict[str, str], *, name: str = LOCAL_CHAMPION, port: int | None = None
) -> dict[str, Any]:
    """Serve a resolved version on the loopback port (local_inference_port by default)."""
    port = port or settings.local_inference_port
    cmd = model_server_command(settings, resolved["version"], port)
    meta = {"model": settings.model_name, "version": resolved["version"], "port": port}
    return ensure_local_service(settings, name, cmd, port=port, meta=meta)


def _local_deployment(
    settings: Settings, services: list[dict[str, Any]], entry: str, challenger: str | None = None
) -> Deployment:
    return {
        "target": "local",
        "model_name": settings.model_name,
        "services": services,
        "entry": entry,
        "entry_path": infer_path(settings.model_name),
        "challenger": challenger,
    }


def write_local_mirror_specs(settings: Settings, mirror_percent: float) -> dict[str, Path]:
    """Write the InferenceGraph and VirtualService the local router runs (same builders as the cluster)."""
    run_dir = _run_dir(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    ns = settings.kserve_namespace
    champion = kb.isvc_name(settings.model_name)
    challenger = kb.isvc_name(settings.model_name, "challenger")
    graph = kb.build_mirror_inference_graph(
        kb.isvc_name(settings.model_name, "mirror"), ns, champion, challenger
    )
    shadow = kb.isvc_name(settings.model_name, "shadow")
    virtual_service = kb.build_mirror_virtual_service(
        shadow,
        ns,
        kb.external_host(shadow, ns),
        kb.predictor_host(champion, ns),
        kb.predictor_host(challenger, ns),
        mirror_percent,
    )
    paths = {
        "inferencegraph": run_dir / "mirror-inferencegraph.yaml",
        "virtualservice": run_dir / "mirror-virtualservice.yaml",
    }
    paths["inferencegraph"].write_text(kb.to_yaml(graph))
    paths["virtualservice"].write_text(kb.to_yaml(virtual_service))
    return paths


def router_command(
    settings: Settings, spec: Path, champion_url: str, challenger_url: str, *, port: int | None = None
) -> list[str]:
    """The local router command: the spec's service names resolved to the local servers."""
    import yaml

    manifest = yaml.safe_load(spec.read_text())
    names = kb.referenced_services(manifest)
    champion = kb.isvc_name(settings.model_name)
    resolve = []
    for service in names:
        # Graph steps name InferenceServices; VirtualService hosts name their predictor Services.
        is_champion = service in (champion, f"{champion}-predictor")
        resolve += ["--resolve", f"{service}={champion_url if is_champion else challenger_url}"]
    python = str(settings.resolve_path(settings.local_serving_python, PROJECT_ROOT))
    return [
        python,
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
        str(_run_dir(settings) / "predictions.jsonl"),
        # Graph steps call the local servers under this model name (not the InferenceService's).
        "--target-model-name",
        settings.model_name,
    ]


def start_mirroring_local(
    settings: Settings,
    champion: dict[str, str],
    challenger: dict[str, str],
    mirror_percent: float,
    *,
    design: str = "virtualservice",
) -> Deployment:
    """Champion on local_inference_port, challenger two ports up, router on local_router_port.

    The router runs the VirtualService by default (it carries mirror_percent and mirrors
    fire-and-forget, like Envoy); design="inferencegraph" runs the Sequence graph instead.
    """
    champion_port = settings.local_inference_port
    challenger_port = champion_port + CHALLENGER_PORT_OFFSET
    if len({champion_port, challenger_port, settings.local_router_port}) != 3:
        raise ValueError("local_inference_port, its +2 challenger port and local_router_port must differ")
    services = [
        start_model_local(settings, champion, name=LOCAL_CHAMPION, port=champion_port),
        start_model_local(settings, challenger, name=LOCAL_CHALLENGER, port=challenger_port),
    ]
    specs = write_local_mirror_specs(settings, mirror_percent)
    cmd = router_command(settings, specs[design], services[0]["url"], services[1]["url"])
    meta = {
        "model": settings.model_name,
        "design": design,
        "mirror_percent": float(mirror_percent),
        "champion_version": champion["version"],
        "challenger_version": challenger["version"],
        "port": settings.local_router_port,
    }
    # The router is restarted whenever either version or the spec changes (meta/cmd differ).
    services.append(
        ensure_local_service(settings, LOCAL_ROUTER, cmd, port=settings.local_router_port, meta=meta)
    )
    return _local_deployment(settings, services, entry=LOCAL_ROUTER, challenger=LOCAL_CHALLENGER)


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def wait_local(
    settings: Settings, deployment: Deployment, *, timeout: float = LOCAL_READY_TIMEOUT_S
) -> Deployment:
    """Wait until each model server says its model is ready and the router answers HTTP."""
    run_dir = _run_dir(settings)
    deadline = time.monotonic() + timeout
    for service in deployment["services"]:
        name = service["name"]
        # Model servers have KServe's per-model readiness; for the router any HTTP answer
        # means it listens, and the smoke test through it proves the routing.
        url = (
            f"{service['url']}/v2/models/{settings.model_name}/ready"
            if name != LOCAL_ROUTER
            else f"{service['url']}/v2/health/ready"
        )
        while True:
            recorded = local_services.status(run_dir, name)
            if recorded is None:
                raise RuntimeError(
                    f"local service {name!r} exited while starting:\n{_log_tail(run_dir, name)}"
                )
            code = _http_status(url)
            if code == 200 or (name == LOCAL_ROUTER and code is not None):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"local service {name!r} not ready at {url} after {timeout:.0f}s:\n"
                    + _log_tail(run_dir, name)
                )
            time.sleep(0.5)
    urls = {s["name"]: s["url"] for s in deployment["services"]}
    return {**deployment, "urls": urls}


def _log_tail(run_dir: Path, name: str, lines: int = 30) -> str:
    path = run_dir / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- target-agnostic steps


def start_model(settings: Settings, resolved: dict[str, str]) -> Deployment:
    """Create or update the serving of one resolved version on the configured target."""
    if settings.deploy_target == "kubernetes":
        return apply_model_kubernetes(settings, resolved)
    if settings.deploy_target == "local":
        service = start_model_local(settings, resolved)
        return _local_deployment(settings, [service], entry=LOCAL_CHAMPION)
    raise ValueError(f"deploy_target must be 'local' or 'kubernetes', not {settings.deploy_target!r}")


def start_mirroring(
    settings: Settings, champion: dict[str, str], challenger: dict[str, str], mirror_percent: float = 100.0
) -> Deployment:
    """Champion + challenger + mirroring on the configured target."""
    if not 0 <= float(mirror_percent) <= 100:
        raise ValueError(f"mirror_percent must be within 0..100, not {mirror_percent}")
    if settings.deploy_target == "kubernetes":
        return apply_mirroring_kubernetes(settings, champion, challenger, float(mirror_percent))
    if settings.deploy_target == "local":
        return start_mirroring_local(settings, champion, challenger, float(mirror_percent))
    raise ValueError(f"deploy_target must be 'local' or 'kubernetes', not {settings.deploy_target!r}")


def wait_until_ready(settings: Settings, deployment: Deployment) -> Deployment:
    """Wait for the deployment on its target; returns it with `urls`."""
    if deployment["target"] == "kubernetes":
        return wait_kubernetes(deployment)
    return wait_local(settings, deployment)


def smoke_test(deployment: Deployment, body: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """Predict the sample rows through the entry point (and the challenger directly, if any)."""
    body = body or smoke_body()
    urls, entry = deployment["urls"], deployment["entry"]
    results = {entry: smoke_predict(urls[entry] + deployment["entry_path"], body)}
    challenger = deployment.get("challenger")
    if challenger:
        # A challenger that cannot predict would make the mirrored comparison meaningless,
        # and the mirror hides its failures from callers: check it directly.
        results[challenger] = smoke_predict(urls[challenger] + infer_path(deployment["model_name"]), body)
    return results


# --------------------------------------------------------------------------- whole deploys


def deploy_model(
    settings: Settings, model_ref: str = "champion", *, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Resolve, serve, wait and smoke-test one model version (alias or version number).

    `body` replaces the sample request of the smoke test (default: src/tests/data/testdata.json).
    """
    resolved = resolve_model(settings, model_ref)
    deployment = wait_until_ready(settings, start_model(settings, resolved))
    return {**deployment, "model": resolved, "predictions": smoke_test(deployment, body)}


def deploy_traffic_mirroring(
    settings: Settings,
    champion_ref: str = "champion",
    challenger_ref: str = "challenger",
    mirror_percent: float = 100.0,
    *,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Serve champion and challenger with the challenger receiving mirrored traffic; smoke-test."""
    champion = resolve_model(settings, champion_ref)
    challenger = resolve_model(settings, challenger_ref)
    deployment = wait_until_ready(settings, start_mirroring(settings, champion, challenger, mirror_percent))
    return {
        **deployment,
        "champion": champion,
        "challenger": challenger,
        "predictions": smoke_test(deployment, body),
    }
