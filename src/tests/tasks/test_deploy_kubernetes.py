"""Tests of the apply layer through the real kubernetes client against a recording fake API server."""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from tasks.deploy import kubernetes as k8s_apply
from tasks.deploy import manifests as kb
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
INVALID = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '
    'the InferenceService "wachttijden" is invalid',
    "reason": "Invalid",
    "details": {
        "name": "wachttijden",
        "group": "serving.kserve.io",
        "kind": "InferenceService",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: -1: must be >= 0",
                "field": "spec.predictor.minReplicas",
            }
        ],
    },
    "code": 422,
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
        self.foreign_fields: dict[str, dict[str, Any]] = {}  # path -> {spec dotted path: value}
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
        forced = query.get("force", "").lower() == "true"
        conflicts = [f for f, v in self.foreign_fields.get(path, {}).items() if _dig(body, f) != v]
        if conflicts and not forced:
            return 409, conflict_status(conflicts)
        if conflicts:
            self.foreign_fields.pop(path)  # force: ownership moves to the applier
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

    def edit_by_hand(self, path: str, field: str, value: Any) -> None:
        """Another field manager (kubectl edit) changes a field and owns it from then on."""
        obj = self.objects[path]
        _set(obj, field, value)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.foreign_fields.setdefault(path, {})[field] = value


def _contains(obj: Any, applied: Any) -> bool:
    """True when every field of the applied configuration has the same value in obj."""
    if isinstance(applied, dict):
        return isinstance(obj, dict) and all(k in obj and _contains(obj[k], v) for k, v in applied.items())
    return obj == applied


def _dig(obj: Any, dotted: str) -> Any:
    for key in dotted.strip(".").split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _set(obj: dict, dotted: str, value: Any) -> None:
    keys = dotted.strip(".").split(".")
    for key in keys[:-1]:
        obj = obj[key]
    obj[keys[-1]] = value


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    server = FakeKubeApi(
        {"inferenceservices", "inferencegraphs", "servingruntimes", "virtualservices", "gateways"}
    )
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def api(fake: FakeKubeApi) -> client.CustomObjectsApi:
    config = client.Configuration(host=fake.host)
    return client.CustomObjectsApi(client.ApiClient(config))


def isvc(min_replicas: int = 1) -> dict:
    return kb.build_inference_service("wachttijden", NS, "s3://b/m/", min_replicas=min_replicas)


class FakeClock:
    """time.monotonic/time.sleep stand-ins: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ready(generation: int = 1, url: str = "http://wachttijden-predictor.models.svc.cluster.local") -> dict:
    return {
        "observedGeneration": generation,
        "address": {"url": url},
        "conditions": [
            {"type": "PredictorReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }


NOT_READY = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "PredictorReady",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "Deployment wachttijden-predictor exceeded its progress deadline",
        },
        {
            "type": "Ready",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "predictor not ready",
        },
    ],
}


class TestApply:
    def test_should_send_a_server_side_apply_patch_as_the_sluice_field_manager(self, fake, api):
        created = k8s_apply.apply(isvc(), api=api)
        call, read_back = fake.calls
        assert call["method"] == "PATCH"
        assert call["path"] == ISVC_PATH
        assert call["content_type"] == "application/apply-patch+yaml"
        assert call["query"] == {"fieldManager": "sluice", "fieldValidation": "Strict", "force": "True"}
        assert call["body"] == isvc()
        assert created["metadata"]["resourceVersion"] == "1000"
        assert created["spec"] == isvc()["spec"]
        # Creating answers 201, which the generated client returns as None: the layer reads back.
        assert (read_back["method"], read_back["path"]) == ("GET", ISVC_PATH)

    def test_should_not_read_back_when_the_apply_answers_200(self, fake, api):
        k8s_apply.apply(isvc(), api=api)
        fake.calls.clear()
        k8s_apply.apply(isvc(2), api=api)
        assert [c["method"] for c in fake.calls] == ["PATCH"]

    def test_should_change_nothing_when_applied_twice(self, fake, api):
        first = k8s_apply.apply(isvc(), api=api)
        second = k8s_apply.apply(isvc(), api=api)
        patches = [c["body"] for c in fake.calls if c["method"] == "PATCH"]
        assert patches == [isvc(), isvc()]  # the same patch both times
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        assert second["metadata"]["generation"] == first["metadata"]["generation"] == 1

    def test_should_update_in_place_when_the_spec_changes(self, fake, api):
        first = k8s_apply.apply(isvc(1), api=api)
        second = k8s_apply.apply(isvc(2), api=api)
        assert second["metadata"]["uid"] == first["metadata"]["uid"]
        assert second["metadata"]["generation"] == 2
        assert second["spec"]["predictor"]["minReplicas"] == 2

    def test_should_apply_every_builder_kind_to_its_api_path(self, fake, api):
        manifests = kb.mirror_manifests(
            model_name="wachttijden",
            namespace=NS,
            image="img:1",
            champion_uri="s3://b/1",
            challenger_uri="s3://b/2",
        )
        k8s_apply.apply_all(manifests.values(), api=api)
        assert [c["path"] for c in fake.calls if c["method"] == "PATCH"] == [
            f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/servingruntimes/sluice-mlflow",
            ISVC_PATH,
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/wachttijden-challenger",
            f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/inferencegraphs/wachttijden-mirror",
            f"/apis/networking.istio.io/v1/namespaces/{NS}/gateways/sluice-models-gateway",
            f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/wachttijden-shadow",
        ]

    def test_should_take_back_a_field_changed_by_hand(self, fake, api):
        k8s_apply.apply(isvc(1), api=api)
        fake.edit_by_hand(ISVC_PATH, "spec.predictor.minReplicas", 5)
        applied = k8s_apply.apply(isvc(1), api=api)
        assert applied["spec"]["predictor"]["minReplicas"] == 1

    def test_should_report_a_conflict_with_its_fields_when_not_forcing(self, fake, api):
        k8s_apply.apply(isvc(1), api=api)
        fake.edit_by_hand(ISVC_PATH, "spec.predictor.minReplicas", 5)
        with pytest.raises(k8s_apply.ApplyError) as err:
            k8s_apply.apply(isvc(1), api=api, force=False)
        assert err.value.status == 409
        message = str(err.value)
        assert "InferenceService models/wachttijden" in message
        assert "HTTP 409 Conflict" in message
        assert "spec.predictor.minReplicas" in message
        assert "force=True" in message

    def test_should_say_the_crd_may_be_missing_on_404(self, fake, api):
        fake.plurals.discard("inferencegraphs")
        graph = kb.build_mirror_inference_graph("g", NS, "a", "b")
        with pytest.raises(k8s_apply.ApplyError, match=r"(?s)HTTP 404.*is the CRD installed") as err:
            k8s_apply.apply(graph, api=api)
        assert err.value.status == 404

    def test_should_show_the_invalid_field_on_422(self, fake, api):
        fake.script("PATCH", ISVC_PATH, 422, INVALID)
        with pytest.raises(k8s_apply.ApplyError) as err:
            k8s_apply.apply(isvc(), api=api)
        message = str(err.value)
        assert "HTTP 422 Invalid" in message
        assert "admission webhook" in message
        assert "spec.predictor.minReplicas: Invalid value: -1: must be >= 0" in message

    def test_should_refuse_unknown_kinds_and_versions_before_calling(self, fake, api):
        with pytest.raises(ValueError, match="unsupported kind"):
            k8s_apply.apply(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}}, api=api
            )
        with pytest.raises(ValueError, match="apiVersion serving.kserve.io/v1beta1"):
            k8s_apply.apply({**isvc(), "apiVersion": "serving.kserve.io/v1alpha1"}, api=api)
        assert fake.calls == []


class TestWaitReady:
    def test_should_poll_until_ready_and_return_the_object(self, fake, api):
        k8s_apply.apply(isvc(), api=api)
        fake.set_statuses(ISVC_PATH, {}, NOT_READY, ready())
        clock = FakeClock()
        obj = k8s_apply.wait_ready(
            "InferenceService",
            "wachttijden",
            NS,
            60,
            api=api,
            clock=clock,
            sleep=clock.sleep,
            poll_interval=2,
        )
        assert clock.sleeps == [2, 2]
        assert k8s_apply.status_url(obj) == "http://wachttijden-predictor.models.svc.cluster.local"
        assert [c["method"] for c in fake.calls] == ["PATCH", "GET"] + ["GET"] * 3

    def test_should_wait_while_the_object_does_not_exist_yet(self, fake, api):
        clock = FakeClock()
        with pytest.raises(TimeoutError, match="object not found"):
            k8s_apply.wait_ready(
                "InferenceService",
                "wachttijden",
                NS,
                10,
                api=api,
                clock=clock,
                sleep=clock.sleep,
                poll_interval=5,
            )

    def test_should_time_out_with_the_status_conditions_in_the_message(self, fake, api):
        k8s_apply.apply(isvc(), api=api)
        fake.set_statuses(ISVC_PATH, NOT_READY)
        clock = FakeClock()
        with pytest.raises(TimeoutError) as err:
            k8s_apply.wait_ready(
                "InferenceService",
                "wachttijden",
                NS,
                30,
                api=api,
                clock=clock,
                sleep=clock.sleep,
                poll_interval=5,
            )
        message = str(err.value)
        assert "InferenceService models/wachttijden not Ready after 30s" in message
        assert (
            "PredictorReady=False (ProgressDeadlineExceeded): Deployment wachttijden-predictor exceeded "
            "its progress deadline"
        ) in message
        assert "Ready=False (ProgressDeadlineExceeded): predictor not ready" in message
        assert clock.now >= 30

    def test_should_not_trust_a_ready_condition_of_an_older_generation(self, fake, api):
        k8s_apply.apply(isvc(1), api=api)
        k8s_apply.apply(isvc(2), api=api)  # generation 2
        fake.set_statuses(ISVC_PATH, ready(generation=1), ready(generation=2))
        clock = FakeClock()
        obj = k8s_apply.wait_ready(
            "InferenceService",
            "wachttijden",
            NS,
            60,
            api=api,
            clock=clock,
            sleep=clock.sleep,
            poll_interval=1,
        )
        assert obj["status"]["observedGeneration"] == 2
        assert clock.sleeps == [1]

    def test_should_fail_at_once_when_the_model_cannot_load(self, fake, api):
        k8s_apply.apply(isvc(), api=api)
        failed = {
            **NOT_READY,
            "modelStatus": {
                "transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {
                    "reason": "ModelLoadFailed",
                    "message": "storage initializer: 403 Forbidden",
                },
            },
        }
        fake.set_statuses(ISVC_PATH, failed)
        clock = FakeClock()
        with pytest.raises(
            RuntimeError, match=r"(?s)BlockedByFailedLoad: ModelLoadFailed storage .*403.*Ready=False"
        ):
            k8s_apply.wait_ready(
                "InferenceService", "wachttijden", NS, 600, api=api, clock=clock, sleep=clock.sleep
            )
        assert clock.sleeps == []

    def test_should_refuse_to_wait_for_kinds_without_ready(self, api):
        with pytest.raises(ValueError, match="no Ready condition"):
            k8s_apply.wait_ready("ServingRuntime", "sluice-mlflow", NS, 1, api=api)

    def test_should_summarize_missing_conditions(self):
        assert "no status conditions" in k8s_apply.conditions_summary({"status": {}})


class V2StandIn:
    """A loopback HTTP server answering V2 infer requests with a scripted status and body."""

    def __init__(self) -> None:
        self.status, self.body = 200, {}
        self.requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.requests.append(
                    {
                        "path": self.path,
                        "body": json.loads(raw),
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                data = json.dumps(stand_in.body).encode()
                self.send_response(stand_in.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v2/models/wachttijden/infer"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def stand_in() -> Iterator[V2StandIn]:
    server = V2StandIn()
    yield server
    server.server.shutdown()
    server.server.server_close()


BODY = {"inputs": [{"name": "TYPE_WACHTTIJD", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}


def answer(shape: list[int], data: list[Any]) -> dict:
    return {
        "model_name": "wachttijden",
        "outputs": [{"name": "predictions", "datatype": "FP32", "shape": shape, "data": data}],
    }


class TestSmokePredict:
    @pytest.mark.parametrize(
        "shape,data", [([2], [3.5, 7.0]), ([2, 1], [[3.5], [7.0]]), ([2, 1], [3.5, 7.0])]
    )
    def test_should_return_one_prediction_per_row(self, stand_in, shape, data):
        stand_in.body = answer(shape, data)
        assert k8s_apply.smoke_predict(stand_in.url, BODY) == [3.5, 7.0]
        (request,) = stand_in.requests
        assert request["body"] == BODY
        assert request["content_type"] == "application/json"

    @pytest.mark.parametrize(
        "body,error",
        [
            (answer([3], [1.0, 2.0, 3.0]), "expected 2 predictions"),
            (answer([2], [1.0, math.nan]), "non-finite"),
            (answer([2], ["x", "y"]), "non-numeric"),
            ({"outputs": []}, "no 'outputs'"),
            (
                {
                    "outputs": [
                        {"name": "a", "shape": [2], "data": [1, 2]},
                        {"name": "b", "shape": [2], "data": [1, 2]},
                    ]
                },
                "no output 'predictions'",
            ),
        ],
    )
    def test_should_reject_a_wrong_answer(self, stand_in, body, error):
        stand_in.body = json.loads(json.dumps(body).replace("NaN", "NaN"))
        with pytest.raises(RuntimeError, match=error):
            k8s_apply.smoke_predict(stand_in.url, BODY)

    def test_should_show_the_servers_error(self, stand_in):
        stand_in.status, stand_in.body = 500, {"error": "model crashed"}
        with pytest.raises(RuntimeError, match=r"HTTP 500.*model crashed"):
            k8s_apply.smoke_predict(stand_in.url, BODY)

    def test_should_say_when_the_endpoint_is_down(self):
        url = f"http://127.0.0.1:{free_port()}/v2/models/wachttijden/infer"
        with pytest.raises(RuntimeError, match="failed: .*refused"):
            k8s_apply.smoke_predict(url, BODY, timeout=2)
