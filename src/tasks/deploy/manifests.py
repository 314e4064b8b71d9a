"""Pure builders of the KServe and Istio objects that serve the model: plain dicts, no I/O, no cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tasks.deploy.names import DEFAULT_DOMAIN, check_name, external_host, isvc_name, predictor_host
from tasks.deploy.storage import storage_uri_for

Manifest = dict[str, Any]

KSERVE_GROUP = "serving.kserve.io"
ISTIO_GROUP = "networking.istio.io"
DEFAULT_RUNTIME = "sluice-mlflow"
PART_OF = {"app.kubernetes.io/part-of": "sluice"}
# Standard mode (called RawDeployment before KServe 0.15) needs no Knative and gives every
# predictor a plain ClusterIP Service `<isvc>-predictor`, which the Istio mirror design needs:
# Envoy appends "-shadow" to the Host of mirrored requests, which breaks Knative's host-based
# routing in Serverless mode. The cluster's default (deploy/kserve/values.yaml) is the same;
# the annotation keeps these objects right on a cluster whose default differs.
DEFAULT_DEPLOYMENT_MODE = "Standard"
DEFAULT_GATEWAY = "sluice-models-gateway"
# The container port of the model server (KServe's convention for single-port runtimes).
MODEL_SERVER_PORT = 8080

def _metadata(
    name: str,
    namespace: str,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": check_name(name),
        "namespace": check_name(namespace, "namespace"),
        "labels": {**PART_OF, **(labels or {})},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# --------------------------------------------------------------------------- KServe objects


def build_inference_service(
    name: str,
    namespace: str,
    storage_uri: str,
    *,
    runtime: str = DEFAULT_RUNTIME,
    protocol_version: str = "v2",
    service_account: str | None = None,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    gpu: int = 0,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    served_model_name: str | None = None,
    deployment_mode: str | None = DEFAULT_DEPLOYMENT_MODE,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """An InferenceService serving the MLflow model at `storage_uri` with the project's runtime.

    `service_account` names a ServiceAccount whose secret holds the storage credentials (KServe's
    storage initializer reads them from there). `served_model_name` makes the server answer under
    another model name than the InferenceService name (see `_model_name_args`).
    """
    if protocol_version not in ("v1", "v2"):
        raise ValueError(f"protocol_version must be 'v1' or 'v2', not {protocol_version!r}")
    if gpu < 0 or min_replicas < 0:
        raise ValueError("gpu and min_replicas must not be negative")
    if max_replicas is not None and max_replicas < max(min_replicas, 1):
        raise ValueError(f"max_replicas {max_replicas} < min_replicas {min_replicas}")

    res = {kind: dict(values) for kind, values in (resources or DEFAULT_RESOURCES).items()}
    if gpu:
        # Extended resources are only honoured in limits (requests default to the limit).
        res.setdefault("limits", {})["nvidia.com/gpu"] = str(gpu)

    model: dict[str, Any] = {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": protocol_version,
        "runtime": check_name(runtime, "runtime"),
        "storageUri": storage_uri_for(storage_uri),
        "resources": res,
    }
    if served_model_name and served_model_name != name:
        model["args"] = _model_name_args(served_model_name)

    predictor: dict[str, Any] = {"minReplicas": min_replicas}
    if max_replicas is not None:
        predictor["maxReplicas"] = max_replicas
    if service_account:
        predictor["serviceAccountName"] = check_name(service_account, "service account")
    predictor["model"] = model

    all_annotations = dict(annotations or {})
    if deployment_mode:
        all_annotations.setdefault("serving.kserve.io/deploymentMode", deployment_mode)
    return {
        "apiVersion": f"{KSERVE_GROUP}/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(name, namespace, labels, all_annotations),
        "spec": {"predictor": predictor},
    }


def _model_name_args(model_name: str) -> list[str]:
    # KServe appends the InferenceService's args to the runtime's, and argparse keeps the last
    # value, so this overrides the runtime's `--model-name {{.Name}}`. It is spelled
    # `--model_name=` because that is the spelling KServe's controller parses to compute the
    # InferenceGraph step URL (/v2/models/<model_name>/infer); the model server accepts both.
    return [f"--model_name={model_name}"]


DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    # TensorFlow plus MLflow need about 600 MB resident for this model; the limit leaves room
    # for request bursts without letting one pod starve the node.
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
}


def build_serving_runtime(
    image: str,
    namespace: str,
    *,
    name: str = DEFAULT_RUNTIME,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """The project's namespaced ServingRuntime: the Sluice model server for `modelFormat: mlflow`."""
    if not image or any(c.isspace() for c in image):
        raise ValueError(f"invalid image reference {image!r}")
    return {
        "apiVersion": f"{KSERVE_GROUP}/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _metadata(name, namespace, labels, None),
        "spec": {
            "annotations": {
                "prometheus.kserve.io/port": str(MODEL_SERVER_PORT),
                "prometheus.kserve.io/path": "/metrics",
            },
            # autoSelect: an InferenceService asking for modelFormat mlflow without naming a
            # runtime gets this one; priority wins over KServe's built-in MLServer runtime.
            "supportedModelFormats": [{"name": "mlflow", "autoSelect": True, "priority": 2}],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    # Spelled out rather than left to the image's ENTRYPOINT, so the manifest
                    # alone says what runs.
                    "command": ["python", "-m", "serving.model_server"],
                    "args": [
                        "--model-uri", "/mnt/models",
                        "--model-name", "{{.Name}}",
                        "--http-port", str(MODEL_SERVER_PORT),
                        "--host", "0.0.0.0",
                    ],
                    "ports": [{"containerPort": MODEL_SERVER_PORT, "name": "http1", "protocol": "TCP"}],
                    "resources": {k: dict(v) for k, v in (resources or DEFAULT_RESOURCES).items()},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def build_mirror_inference_graph(
    name: str,
    namespace: str,
    champion: str,
    challenger: str,
    *,
    deployment_mode: str | None = DEFAULT_DEPLOYMENT_MODE,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """An InferenceGraph that sends each request to the challenger, then answers with the champion.

    KServe's Sequence router runs the steps in order and returns the last step's response. A
    step reads the previous response only when `data: $response`; `$request` (any other value)
    sends the original request, so the champion sees exactly what the caller sent. A `Soft`
    step's non-2xx answer does not stop the sequence, so a failing challenger never fails the
    request. Limits: the challenger call is synchronous (it adds its latency), and a challenger
    that is unreachable (a transport error rather than an HTTP status) fails the request in
    KServe's router; use the Istio mirror for true fire-and-forget shadowing.
    """
    annotations = {"serving.kserve.io/deploymentMode": deployment_mode} if deployment_mode else None
    return {
        "apiVersion": f"{KSERVE_GROUP}/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": _metadata(name, namespace, labels, annotations),
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {
                            "name": "challenger",
                            "serviceName": check_name(challenger, "challenger"),
                            "dependency": "Soft",
                        },
                        {
                            "name": "champion",
                            "serviceName": check_name(champion, "champion"),
                            "data": "$request",
                            "dependency": "Hard",
                        },
                    ],
                }
            }
        },
    }


def build_mirror_virtual_service(
    name: str,
    namespace: str,
    hosts: str | Sequence[str],
    champion_host: str,
    challenger_host: str,
    mirror_percent: float,
    *,
    gateways: Sequence[str] | None = None,
    port: int = 80,
    timeout: str = "60s",
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """An Istio VirtualService routing all traffic to the champion and mirroring a share to the challenger.

    Envoy sends the mirror copy fire-and-forget and drops its response, so the challenger adds
    no latency and cannot fail a request. The copy keeps the request path, so the challenger
    must answer under the champion's model name (see `served_model_name`). `gateways` defaults
    to the Gateway of `build_gateway` in the same namespace.
    """
    if not 0 <= mirror_percent <= 100:
        raise ValueError(f"mirror_percent must be within 0..100, not {mirror_percent}")
    host_list = [hosts] if isinstance(hosts, str) else list(hosts)
    if not host_list:
        raise ValueError("at least one host is needed")
    route: dict[str, Any] = {
        "name": "champion-with-mirror",
        "route": [{"destination": {"host": champion_host, "port": {"number": port}}, "weight": 100}],
        "mirror": {"host": challenger_host, "port": {"number": port}},
        # Istio takes a double; a float keeps 0.5 % etc. possible and always renders as x.y.
        "mirrorPercentage": {"value": float(mirror_percent)},
        "timeout": timeout,
    }
    return {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "VirtualService",
        "metadata": _metadata(name, namespace, labels, None),
        "spec": {
            "hosts": host_list,
            "gateways": list(gateways) if gateways is not None else [f"{namespace}/{DEFAULT_GATEWAY}"],
            "http": [route],
        },
    }


def build_gateway(
    namespace: str,
    hosts: str | Sequence[str],
    *,
    name: str = DEFAULT_GATEWAY,
    selector: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """An Istio Gateway on the ingress gateway pods (port 80) for the mirror VirtualService's hosts.

    KServe's own routes come from Kubernetes Ingress objects, which Istio translates without a
    Gateway resource; a VirtualService needs a Gateway to bind to. Exact hosts (no wildcard) so
    it never competes with the Ingress-generated routes of the InferenceServices.
    """
    host_list = [hosts] if isinstance(hosts, str) else list(hosts)
    return {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "Gateway",
        "metadata": _metadata(name, namespace, labels, None),
        "spec": {
            # deploy/istio/gateway.yaml: the release istio-ingressgateway labels its pods so.
            "selector": dict(selector or {"istio": "ingressgateway"}),
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": host_list}],
        },
    }


def referenced_services(manifest: Mapping[str, Any]) -> list[str]:
    """The InferenceService-level names a router must resolve to run this graph or mirror locally.

    InferenceGraph: each step's `serviceName`. VirtualService: the first DNS label of each
    route/mirror destination host (e.g. `wachttijden-predictor`).
    """
    names: list[str] = []
    kind = manifest.get("kind")
    if kind == "InferenceGraph":
        for node in manifest["spec"]["nodes"].values():
            names += [step["serviceName"] for step in node.get("steps", []) if step.get("serviceName")]
    elif kind == "VirtualService":
        for http in manifest["spec"].get("http", []):
            hosts = [r["destination"]["host"] for r in http.get("route", [])]
            if "mirror" in http:
                hosts.append(http["mirror"]["host"])
            names += [h.split(".", 1)[0] for h in hosts]
    else:
        raise ValueError(f"{kind} references no services")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- whole deployments


def model_manifests(
    *,
    model_name: str,
    namespace: str,
    image: str,
    storage_uri: str,
    service_account: str | None = None,
    version: str | None = None,
) -> dict[str, Manifest]:
    """File name -> manifest for serving one model (the champion) on KServe."""
    labels = {"sluice.io/model-name": model_name, "sluice.io/role": "champion"}
    if version:
        labels["sluice.io/model-version"] = str(version)
    return {
        "servingruntime.yaml": build_serving_runtime(image, namespace),
        "inferenceservice-champion.yaml": build_inference_service(
            isvc_name(model_name), namespace, storage_uri, service_account=service_account, labels=labels
        ),
    }


def mirror_manifests(
    *,
    model_name: str,
    namespace: str,
    image: str,
    champion_uri: str,
    challenger_uri: str,
    mirror_percent: float = 100.0,
    domain: str = DEFAULT_DOMAIN,
    service_account: str | None = None,
    champion_version: str | None = None,
    challenger_version: str | None = None,
) -> dict[str, Manifest]:
    """File name -> manifest for champion + challenger and both mirroring designs."""
    champion, challenger = isvc_name(model_name), isvc_name(model_name, "challenger")
    manifests = model_manifests(
        model_name=model_name, namespace=namespace, image=image, storage_uri=champion_uri,
        service_account=service_account, version=champion_version,
    )
    challenger_labels = {"sluice.io/model-name": model_name, "sluice.io/role": "challenger"}
    if challenger_version:
        challenger_labels["sluice.io/model-version"] = str(challenger_version)
    manifests["inferenceservice-challenger.yaml"] = build_inference_service(
        challenger, namespace, challenger_uri, service_account=service_account,
        # Same model name as the champion: the Istio mirror copies the request path unchanged.
        served_model_name=champion, labels=challenger_labels,
    )
    return {**manifests, **mirror_routing(model_name=model_name, namespace=namespace,
                                          mirror_percent=mirror_percent, domain=domain)}


def mirror_routing(
    *, model_name: str, namespace: str, mirror_percent: float = 100.0, domain: str = DEFAULT_DOMAIN
) -> dict[str, Manifest]:
    """File name -> the objects that send the champion's traffic to the challenger too (both designs).

    The cluster applies them; the local router runs the InferenceGraph or the VirtualService as is.
    """
    champion, challenger = isvc_name(model_name), isvc_name(model_name, "challenger")
    shadow = isvc_name(model_name, "shadow")
    shadow_host = external_host(shadow, namespace, domain)
    return {
        "inferencegraph-mirror.yaml": build_mirror_inference_graph(
            isvc_name(model_name, "mirror"), namespace, champion, challenger
        ),
        "gateway-mirror.yaml": build_gateway(namespace, shadow_host),
        "virtualservice-mirror.yaml": build_mirror_virtual_service(
            shadow, namespace, shadow_host,
            predictor_host(champion, namespace), predictor_host(challenger, namespace), mirror_percent,
        ),
    }


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """One manifest as YAML, keys in builder order (what `kubectl apply` and the router read)."""
    import yaml

    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False, width=1000)
