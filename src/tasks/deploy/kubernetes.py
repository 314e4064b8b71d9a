"""A small layer that server-side applies builder output, waits for Ready and smoke-tests a prediction."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

# One owner name for every object the pipelines apply, so `kubectl get -o yaml --show-managed-fields`
# tells what the DAGs manage, and the shell scripts (same name) converge to the same owner.
FIELD_MANAGER = "sluice"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


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
        config.load_kube_config()
    return client.CustomObjectsApi()


def apply(
    manifest: Mapping[str, Any],
    *,
    api: CustomObjectsApi,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
) -> dict[str, Any]:
    """Server-side apply one object and return it as the server stored it.

    Applying the same manifest again is a no-op on the server (same resourceVersion), so a
    retried task converges. `force=True` because the DAG is the declared owner of these
    objects: a field someone changed by hand (`kubectl edit`, another manager) is taken back
    instead of failing the deploy with a 409 conflict. Pass force=False to see conflicts.
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
            force=force,
            _content_type=APPLY_CONTENT_TYPE,
        )
    except ApiException as exc:
        raise ApplyError(_describe_api_error(exc, manifest), exc.status) from exc
    if result is None:
        # An apply that creates the object answers 201, which the generated client does not map
        # to a return type (only 200): read the object back instead.
        result = get(manifest["kind"], meta["name"], meta["namespace"], api=api)
    return result


def apply_all(
    manifests: Iterable[Mapping[str, Any]], *, api: CustomObjectsApi, force: bool = True
) -> list[dict[str, Any]]:
    """Apply in order (runtime before the services that use it, services before graphs)."""
    return [apply(m, api=api, force=force) for m in manifests]


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
    hint = {
        404: "the API server does not know this kind or namespace: is the CRD installed "
        "(KServe/Istio) and does the namespace exist?",
        409: "another field manager owns these fields; re-run with force=True to take them over "
        "or remove the other manager's change",
        422: "the object is invalid for this cluster's CRD schema or admission webhook",
        401: "not authenticated to the cluster",
        403: "the service account may not patch this resource (check its RBAC Role)",
    }.get(exc.status, "")
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
    kind: str,
    name: str,
    namespace: str,
    timeout: float = 600,
    *,
    api: CustomObjectsApi,
    poll_interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
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
    """The in-cluster URL of a Ready InferenceService (status.address.url) or graph (status.url)."""
    status = obj.get("status") or {}
    url = (status.get("address") or {}).get("url") or status.get("url")
    if not url:
        raise RuntimeError(f"{obj.get('kind')} {obj['metadata']['name']} is Ready but has no URL in status")
    return url.rstrip("/")


def smoke_predict(
    url: str,
    body: Mapping[str, Any],
    *,
    output: str = "predictions",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> list[float]:
    """POST a V2 infer request and check the answer has one finite number per input row."""
    rows = _row_count(body)
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own endpoint
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise RuntimeError(f"smoke test POST {url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise RuntimeError(f"smoke test POST {url} failed: {getattr(exc, 'reason', exc)}") from exc

    outputs = payload.get("outputs") if isinstance(payload, dict) else None
    if not outputs:
        raise RuntimeError(f"smoke test {url}: no 'outputs' in the answer: {str(payload)[:300]}")
    chosen = next((o for o in outputs if o.get("name") == output), outputs[0] if len(outputs) == 1 else None)
    if chosen is None:
        raise RuntimeError(f"smoke test {url}: no output {output!r} among {[o.get('name') for o in outputs]}")
    shape, data = chosen.get("shape") or [], _flatten(chosen.get("data"))
    # [n] or [n, 1] are both one prediction per row.
    if not shape or shape[0] != rows or math.prod(shape) != rows or len(data) != rows:
        raise RuntimeError(
            f"smoke test {url}: expected {rows} predictions, got shape {shape} with {len(data)} values"
        )
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in data):
        raise RuntimeError(f"smoke test {url}: non-numeric or non-finite predictions {data}")
    return [float(v) for v in data]


def _row_count(body: Mapping[str, Any]) -> int:
    inputs = body.get("inputs") or []
    if not inputs:
        raise ValueError("a V2 request body needs 'inputs'")
    counts = {int(i["shape"][0]) for i in inputs}
    if len(counts) != 1:
        raise ValueError(f"inputs disagree on the row count: {sorted(counts)}")
    return counts.pop()


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [] if data is None else [data]
