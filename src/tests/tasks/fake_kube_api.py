"""A recording fake of the Kubernetes API server's server-side apply for custom objects.

Only for what the real API server of the simulated cluster (src/tests/cluster) cannot show: the requests
the client sends, and scripted answers a real server does not give on demand (a 409 to a forced apply;
statuses stepping on each read for the render CLI, which runs in a subprocess).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.processes import free_port

NS = "models"
ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/wachttijden"

# Status bodies in the shape the API server returns them (kind: Status), as recorded from
# `kubectl apply --server-side` against a KServe 0.21 cluster, trimmed to the fields read.
NOT_FOUND = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server could not find the requested resource",
    "reason": "NotFound",
    "details": {},
    "code": 404,
}


def conflict_status(fields: list[str]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Apply failed with {len(fields)} conflict: conflict with "kubectl-edit" '
        f"using serving.kserve.io/v1beta1: {fields[0]}",
        "reason": "Conflict",
        "details": {
            "causes": [
                {
                    "reason": "FieldManagerConflict",
                    "message": 'conflict with "kubectl-edit" using serving.kserve.io/v1beta1',
                    "field": f,
                }
                for f in fields
            ]
        },
        "code": 409,
    }


class FakeKubeApi:
    """An HTTP server that behaves like the API server's server-side apply for custom objects.

    It records every request, keeps objects the way SSA does (an identical apply changes
    nothing, so the resourceVersion stays; a changed spec bumps generation), knows only the
    plurals of "installed" CRDs (others answer 404), plays scripted responses first, and steps
    an object's status through a scripted sequence on each GET.
    """

    def __init__(self, plurals: set[str]) -> None:
        self.plurals = plurals
        self.objects: dict[str, dict[str, Any]] = {}
        self.scripted: dict[tuple[str, str], deque[tuple[int, dict]]] = {}
        self.statuses: dict[str, deque[dict]] = {}
        self.calls: list[dict[str, Any]] = []
        self._rv = itertools.count(1000)
        self._lock = threading.Lock()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, method: str, path: str, status: int, body: dict) -> None:
        self.scripted.setdefault((method, path), deque()).append((status, body))

    def set_statuses(self, path: str, *statuses: dict) -> None:
        self.statuses[path] = deque(statuses)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with fake._lock:
                    fake.calls.append(
                        {
                            "method": method,
                            "path": url.path,
                            "query": query,
                            "content_type": self.headers.get("Content-Type"),
                            "body": body,
                        }
                    )
                    status, answer = fake.respond(
                        method, url.path, query, self.headers.get("Content-Type"), body
                    )
                self._reply(status, answer)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._handle("GET")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

        return Handler

    def respond(
        self, method: str, path: str, query: dict, content_type: str | None, body: Any
    ) -> tuple[int, dict]:
        queue = self.scripted.get((method, path))
        if queue:
            return queue.popleft()
        parts = path.strip("/").split("/")
        # /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>
        if len(parts) != 7 or parts[0] != "apis" or parts[5] not in self.plurals:
            return 404, NOT_FOUND
        if method == "GET":
            obj = self.objects.get(path)
            if obj is None:
                return 404, {**NOT_FOUND, "reason": "NotFound", "message": f'"{parts[6]}" not found'}
            if self.statuses.get(path):
                obj["status"] = self.statuses[path].popleft()
            return 200, obj
        if content_type != "application/apply-patch+yaml":
            return 415, {
                "kind": "Status",
                "code": 415,
                "reason": "UnsupportedMediaType",
                "message": content_type,
            }
        if not query.get("fieldManager"):
            return 422, {
                "kind": "Status",
                "code": 422,
                "reason": "Invalid",
                "message": "fieldManager: Required value: is required for apply patch",
            }
        if body["metadata"]["name"] != parts[6]:
            return 400, {"kind": "Status", "code": 400, "reason": "BadRequest", "message": "name mismatch"}
        existing = self.objects.get(path)
        if existing is not None and _contains(existing, body):
            return 200, existing  # the object already says all this: nothing changes, same resourceVersion
        new = copy.deepcopy(body)
        generation = 1
        if existing is not None:
            generation = existing["metadata"]["generation"] + (existing.get("spec") != body.get("spec"))
            new["status"] = existing.get("status", {})
        new["metadata"].update(
            uid=(existing or {}).get("metadata", {}).get("uid", f"uid-{parts[6]}"),
            resourceVersion=str(next(self._rv)),
            generation=generation,
        )
        self.objects[path] = new
        return (200 if existing else 201), new


def _contains(obj: Any, applied: Any) -> bool:
    """True when every field of the applied configuration has the same value in obj."""
    if isinstance(applied, dict):
        return isinstance(obj, dict) and all(k in obj and _contains(obj[k], v) for k, v in applied.items())
    return obj == applied


def ready(generation: int = 1, url: str = "http://wachttijden-predictor.models.svc.cluster.local") -> dict:
    return {
        "observedGeneration": generation,
        "address": {"url": url},
        "conditions": [
            {"type": "PredictorReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }


PLURALS = {"inferenceservices", "inferencegraphs", "servingruntimes", "virtualservices", "gateways"}


@contextmanager
def running_fake() -> Iterator[FakeKubeApi]:
    """A started fake that knows the CRDs the builders use; shut down on exit."""
    server = FakeKubeApi(set(PLURALS))
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def api_client(fake: FakeKubeApi) -> Any:
    """A CustomObjectsApi of the real kubernetes client talking to the fake."""
    from kubernetes import client

    return client.CustomObjectsApi(client.ApiClient(client.Configuration(host=fake.host)))


def write_kubeconfig(fake: FakeKubeApi, path: Path) -> Path:
    """A kubeconfig whose current context is the fake, for code that loads its own client."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.host}}],
        "users": [{"name": "fake", "user": {"token": "test"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    return path


def object_path(kind_plural: str, name: str, namespace: str = NS) -> str:
    """The API path of a custom object of the builders' kinds."""
    group = "networking.istio.io/v1" if kind_plural in ("virtualservices", "gateways") else (
        "serving.kserve.io/v1beta1" if kind_plural == "inferenceservices" else "serving.kserve.io/v1alpha1")
    return f"/apis/{group}/namespaces/{namespace}/{kind_plural}/{name}"
