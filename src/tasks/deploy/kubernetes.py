"""The Kubernetes target: server-side apply of the builders' objects in one order, waits for Ready."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.deploy import manifests as builders
from tasks.deploy.deployment import Deployment
from tasks.deploy.names import isvc_name
from tasks.deploy.smoke import infer_path
from tasks.deploy.storage import storage_uri_for
from tasks.deploy.versions import serving_image

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

    from tasks.config import Settings
    from tasks.registry import ResolvedVersion

# One owner name for every object the pipelines apply, so `kubectl get -o yaml --show-managed-fields`
# tells what the DAGs manage, and the shell scripts (same name) converge to the same owner.
FIELD_MANAGER = "sluice"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# The one conflict policy of every apply (the deploy DAGs and deploy-model.sh/deploy-sequence.sh,
# which call `python -m tasks.deploy.render --apply`): force. These objects are declared by the
# builders and owned by the pipelines; a field someone changed by hand (`kubectl edit`, another
# field manager) is taken back, as a re-run must converge instead of failing with a 409 conflict.
FORCE_CONFLICTS = True
# Applied first, in this order: KServe rejects an InferenceService whose runtime does not exist
# yet, and the InferenceGraph controller resolves each step's serviceName to the URL of a Ready
# InferenceService, so everything that routes to the services is applied after they are Ready.
SERVING_KINDS = ("ServingRuntime", "InferenceService")
READY_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Kind:
    """Where a custom resource lives in the API and whether it reports a Ready condition."""

    group: str
    version: str
    plural: str
    has_ready: bool


KINDS: dict[str, Kind] = {
    "InferenceService": Kind("serving.kserve.io", "v1beta1", "inferenceservices", True),
    "InferenceGraph": Kind("serving.kserve.io", "v1alpha1", "inferencegraphs", True),
    "ServingRuntime": Kind("serving.kserve.io", "v1alpha1", "servingruntimes", False),
    "VirtualService": Kind("networking.istio.io", "v1", "virtualservices", False),
    "Gateway": Kind("networking.istio.io", "v1", "gateways", False),
}


class ApplyError(RuntimeError):
    """The API server refused an apply; the message carries its reason and field causes."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The Kind of a manifest, checking its apiVersion is the one this layer knows."""
    kind = KINDS.get(manifest.get("kind", ""))
    if kind is None:
        raise ValueError(f"unsupported kind {manifest.get('kind')!r}; known: {sorted(KINDS)}")
    expected = f"{kind.group}/{kind.version}"
    if manifest.get("apiVersion") != expected:
        raise ValueError(
            f"{manifest['kind']} must have apiVersion {expected}, not {manifest.get('apiVersion')!r}"
        )
    return kind


def custom_objects_api() -> CustomObjectsApi:
    """A CustomObjectsApi from the pod's service account, else from the current kubeconfig context."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG as it is now: the client's own default is the value when kubernetes was first imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.CustomObjectsApi()


def apply(
    manifest: Mapping[str, Any],
    *,
    api: CustomObjectsApi,
    field_manager: str = FIELD_MANAGER,
) -> dict[str, Any]:
    """Server-side apply one object (conflicts: FORCE_CONFLICTS) and return it as the server stored it.

    Applying the same manifest again is a no-op on the server (same resourceVersion), so a
    retried task converges.
    """
    from kubernetes.client.exceptions import ApiException

    kind = kind_of(manifest)
    meta = manifest["metadata"]
    try:
        result = api.patch_namespaced_custom_object(
            kind.group, kind.version, meta["namespace"], kind.plural, meta["name"], dict(manifest),
            field_manager=field_manager,
            # Strict: an unknown or duplicated field is an error, not a silently dropped value.
            field_validation="Strict",
            force=FORCE_CONFLICTS,
            _content_type=APPLY_CONTENT_TYPE,
        )
    except ApiException as exc:
        raise ApplyError(_describe_api_error(exc, manifest), exc.status) from exc
    if result is None:
        # An apply that creates the object answers 201, which the generated client does not map
        # to a return type (only 200): read the object back instead.
        result = get(manifest["kind"], meta["name"], meta["namespace"], api=api)
    return result


def apply_all(manifests: Iterable[Mapping[str, Any]], *, api: CustomObjectsApi) -> list[dict[str, Any]]:
    """Apply in the given order; see apply_in_order for the order a deployment needs."""
    return [apply(m, api=api) for m in manifests]


_HINTS = {
    404: "the API server does not know this kind or namespace: is the CRD installed (KServe/Istio) and does the "
    "namespace exist?",
    409: "another field manager owns these fields and the apply did not take them over (see FORCE_CONFLICTS)",
    422: "the object is invalid for this cluster's CRD schema",
    401: "not authenticated to the cluster",
    403: "the service account may not patch this resource (check its RBAC Role)",
}
# Hints by what the API server says rather than its status code: it answers an apply whose fields the
# CRD does not declare (or of the wrong type) with 500, and a webhook's refusal with the webhook's code
# (KServe's validators: 403, which is not RBAC).
_MESSAGE_HINTS = {
    "failed to create typed patch object": "the manifest does not fit the CRD installed in this cluster (a field "
    "it does not declare, or a value of the wrong type): compare the builder with the installed KServe/Istio CRDs",
    "admission webhook": "an admission webhook refused the object; its message says why",
}


def _describe_api_error(exc: Any, manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    what = f"{manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") or exc.reason or "no message"
    causes = [
        f"{c.get('field', '?')}: {c.get('message', c.get('reason', ''))}"
        for c in (status.get("details") or {}).get("causes", [])
    ]
    hint = next((h for text, h in _MESSAGE_HINTS.items() if text in message), _HINTS.get(exc.status, ""))
    text = f"apply {what} failed: HTTP {exc.status} {status.get('reason') or exc.reason}: {message}"
    if causes:
        text += "\n  causes:\n    " + "\n    ".join(causes)
    if hint:
        text += f"\n  hint: {hint}"
    return text


def get(kind_name: str, name: str, namespace: str, *, api: CustomObjectsApi) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    from kubernetes.client.exceptions import ApiException

    kind = KINDS[kind_name]
    try:
        return api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def conditions_summary(obj: Mapping[str, Any] | None) -> str:
    """The object's status conditions as 'Type=Status (Reason): message' lines."""
    if not obj:
        return "  (object not found)"
    conditions = (obj.get("status") or {}).get("conditions") or []
    if not conditions:
        return "  (no status conditions yet: is the controller running?)"
    lines = []
    for c in conditions:
        line = f"  {c.get('type')}={c.get('status')}"
        if c.get("reason"):
            line += f" ({c['reason']})"
        if c.get("message"):
            line += f": {c['message']}"
        lines.append(line)
    return "\n".join(lines)


def _ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    # A Ready=True left over from the previous spec says nothing about the new one.
    observed, generation = status.get("observedGeneration"), obj.get("metadata", {}).get("generation")
    if observed is not None and generation is not None and observed < generation:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _terminal_failure(obj: Mapping[str, Any]) -> str | None:
    # KServe marks a model that cannot load (bad storageUri, crash on load) as terminal in
    # modelStatus; waiting longer would only delay the same error.
    model_status = (obj.get("status") or {}).get("modelStatus") or {}
    if model_status.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
        info = model_status.get("lastFailureInfo") or {}
        return (
            f"{model_status['transitionStatus']}: {info.get('reason', '')} {info.get('message', '')}".strip()
        )
    return None


def wait_ready(
    kind: str, name: str, namespace: str, timeout: float = 600, *, api: CustomObjectsApi, poll_interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the object's Ready condition is True; return the object.

    Raises RuntimeError at once when KServe reports a terminal model failure, TimeoutError
    after `timeout` seconds; both messages include the object's own status conditions.
    """
    if not KINDS[kind].has_ready:
        raise ValueError(f"{kind} reports no Ready condition; nothing to wait for")
    deadline = clock() + timeout
    obj: dict[str, Any] | None = None
    while True:
        obj = get(kind, name, namespace, api=api)
        if obj is not None:
            if _ready(obj):
                return obj
            failure = _terminal_failure(obj)
            if failure:
                raise RuntimeError(
                    f"{kind} {namespace}/{name} failed: {failure}\nconditions:\n{conditions_summary(obj)}"
                )
        if clock() >= deadline:
            raise TimeoutError(
                f"{kind} {namespace}/{name} not Ready after {timeout:.0f}s; conditions:\n"
                f"{conditions_summary(obj)}"
            )
        sleep(poll_interval)


def status_url(obj: Mapping[str, Any]) -> str:
    """The in-cluster URL of a Ready InferenceService (status.address.url) or InferenceGraph.

    KServe (0.20, Standard mode) gives a graph only status.url, its external host <graph>-<namespace>.<domain>,
    which no Ingress routes and a pod cannot resolve; its router answers on the Service named after the graph.
    """
    status, meta = obj.get("status") or {}, obj.get("metadata") or {}
    url = (status.get("address") or {}).get("url")
    if not url and obj.get("kind") == "InferenceGraph" and status.get("url"):
        url = f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local"
    url = url or status.get("url")
    if not url:
        raise RuntimeError(f"{obj.get('kind')} {obj['metadata']['name']} is Ready but has no URL in status")
    return url.rstrip("/")


# --------------------------------------------------------------------------- the one apply order


def _stages(manifests: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    serving = sorted((m for m in manifests if m["kind"] in SERVING_KINDS), key=lambda m: SERVING_KINDS.index(m["kind"]))
    return serving, [m for m in manifests if m["kind"] not in SERVING_KINDS]


def _wait_all(
    manifests: Iterable[Mapping[str, Any]], *, api: CustomObjectsApi, timeout: float, poll_interval: float,
    log: Callable[[str], None],
) -> dict[str, str]:
    urls = {}
    for m in manifests:
        if kind_of(m).has_ready:
            meta = m["metadata"]
            obj = wait_ready(m["kind"], meta["name"], meta["namespace"], timeout, api=api, poll_interval=poll_interval)
            urls[meta["name"]] = status_url(obj)
            log(f"{m['kind']} {meta['namespace']}/{meta['name']} is Ready at {urls[meta['name']]}")
    return urls


def _apply_logged(manifests: Iterable[Mapping[str, Any]], *, api: CustomObjectsApi, log: Callable[[str], None]) -> None:
    for m in manifests:
        apply(m, api=api)
        log(f"applied {m['kind']} {m['metadata']['namespace']}/{m['metadata']['name']}")


def apply_serving(
    manifests: Sequence[Mapping[str, Any]], *, api: CustomObjectsApi, log: Callable[[str], None] = lambda _: None
) -> None:
    """First half of the order: the ServingRuntime, then the InferenceServices."""
    _apply_logged(_stages(manifests)[0], api=api, log=log)


def wait_and_route(
    manifests: Sequence[Mapping[str, Any]],
    *,
    api: CustomObjectsApi,
    timeout: float = READY_TIMEOUT_S,
    poll_interval: float = 5.0,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, str]:
    """Second half: wait for the InferenceServices, apply what routes to them, wait for the graph; name -> URL."""
    serving, routing = _stages(manifests)
    urls = _wait_all(serving, api=api, timeout=timeout, poll_interval=poll_interval, log=log)
    _apply_logged(routing, api=api, log=log)
    return urls | _wait_all(routing, api=api, timeout=timeout, poll_interval=poll_interval, log=log)


def apply_in_order(
    manifests: Sequence[Mapping[str, Any]], *, api: CustomObjectsApi, **wait_options: Any
) -> dict[str, str]:
    """Apply and wait for a whole deployment (what `render --apply` runs); name -> in-cluster URL.

    `wait_options` are wait_and_route()'s (timeout, poll_interval, log).
    """
    apply_serving(manifests, api=api, log=wait_options.get("log", lambda _: None))
    return wait_and_route(manifests, api=api, **wait_options)


# --------------------------------------------------------------------------- the deploy target


def _storage_uri(settings: Settings, version: ResolvedVersion) -> str:
    return storage_uri_for(version.download_uri, artifact_root=settings.mlflow_artifacts_destination or None)


def _builder_inputs(settings: Settings) -> dict[str, Any]:
    return {
        "model_name": settings.model_name,
        "namespace": settings.kserve_namespace,
        "image": settings.serving_image or serving_image(),
        "service_account": settings.kserve_service_account or None,
    }


def serve_model(settings: Settings, champion: ResolvedVersion, *, api: CustomObjectsApi | None = None,
                use_case: str = "wachttijden") -> Deployment:
    """Apply the runtime and the champion InferenceService (the wait step waits for it)."""
    manifests = builders.model_manifests(
        **_builder_inputs(settings), storage_uri=_storage_uri(settings, champion), version=champion.version
    )
    apply_serving(list(manifests.values()), api=api or custom_objects_api())
    return Deployment(
        target="kubernetes",
        model_name=settings.model_name,
        entry=isvc_name(settings.model_name),
        entry_path=infer_path(settings.model_name),
        versions={"champion": champion.to_dict()},
        namespace=settings.kserve_namespace,
        manifests=tuple(manifests.values()), use_case=use_case,
    )


def serve_mirroring(
    settings: Settings, champion: ResolvedVersion, challenger: ResolvedVersion, mirror_percent: float, *,
    api: CustomObjectsApi | None = None, use_case: str = "wachttijden",
) -> Deployment:
    """Apply the runtime and both InferenceServices; the wait step applies the mirroring objects after them."""
    manifests = builders.mirror_manifests(
        **_builder_inputs(settings),
        champion_uri=_storage_uri(settings, champion),
        challenger_uri=_storage_uri(settings, challenger),
        mirror_percent=mirror_percent,
        champion_version=champion.version,
        challenger_version=challenger.version,
    )
    apply_serving(list(manifests.values()), api=api or custom_objects_api())
    return Deployment(
        target="kubernetes",
        model_name=settings.model_name,
        # KServe's graph router serves the graph on its root URL.
        entry=isvc_name(settings.model_name, "mirror"),
        entry_path="",
        challenger=isvc_name(settings.model_name, "challenger"),
        versions={"champion": champion.to_dict(), "challenger": challenger.to_dict()},
        namespace=settings.kserve_namespace,
        manifests=tuple(manifests.values()), use_case=use_case,
    )


def wait(
    settings: Settings, deployment: Deployment, *, api: CustomObjectsApi | None = None,
    timeout: float = READY_TIMEOUT_S, poll_interval: float = 5.0,
) -> Deployment:
    """Finish the apply order (see wait_and_route) and add the in-cluster URLs."""
    urls = wait_and_route(
        deployment.manifests, api=api or custom_objects_api(), timeout=timeout, poll_interval=poll_interval
    )
    return deployment.replace(urls=urls)
