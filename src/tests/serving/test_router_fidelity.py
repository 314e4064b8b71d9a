"""KServe's own router binary and the local Python router run the same InferenceGraph against the same
real model servers: every request must get the same status and the same JSON body from both.

The one field allowed to differ is the `cause` of a request that failed because a step gave no HTTP
answer (Go's and httpx's words for "connection refused"); both must still name the step's URL.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from models.wachttijden.schema import FEATURES
from serving.batcher import BATCH_RTOL
from tests.serving.kserve_router import BUILD_COMMAND, kserve_router, kserve_router_binary
from tests.serving.servers import Service, model_servers, router
from tests.serving.small_model import SAMPLE_ROWS
from tests.support.processes import free_port

BINARY = kserve_router_binary()
pytestmark = pytest.mark.skipif(
    not BINARY.is_file(), reason=f"KServe's router is not built at {BINARY}: run `{BUILD_COMMAND}`"
)
ROUTING_FAILED = "Failed to process request"  # the `error` of KServe's own error answers
V1_PATH = "/v1/models/wachttijden:predict"
V2_PATH = "/v2/models/wachttijden/infer"
V2_BODY = {
    "id": "fixed-id",
    "inputs": [
        {"name": n, "datatype": "BYTES", "shape": [len(SAMPLE_ROWS)], "data": [r[n] for r in SAMPLE_ROWS]}
        for n in FEATURES
    ],
}

# The same requests go to every graph: V1 rows (both, then one that only some conditions match),
# a V2 body with an id, a body that is JSON but no request, and one that is not JSON at all.
REQUESTS: dict[str, bytes] = {
    "v1": json.dumps({"instances": SAMPLE_ROWS}).encode(),
    "v1-urologie": json.dumps({"instances": [SAMPLE_ROWS[1]]}).encode(),
    "v2": json.dumps(V2_BODY).encode(),
    "empty-object": b"{}",
    "not-json": b"instances=1",
}

# {name} is replaced by the step URL of that target (see `urls`).
GRAPHS: dict[str, str] = {
    "sequence-request-after-soft-shadow": """
        root: {routerType: Sequence, steps: [
          {name: challenger, serviceUrl: "{challenger}", dependency: Soft},
          {name: champion, serviceUrl: "{champion}", data: $request, dependency: Hard}]}""",
    "sequence-response-chain": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{champion}"}, {serviceUrl: "{challenger}", data: $response}]}""",
    "sequence-map-predictions-to-instances": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{champion}"},
          {serviceUrl: "{challenger}", data: $response, mapPredictionsToInstances: true}]}""",
    "sequence-soft-error-then-request": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{broken}", dependency: Soft},
          {serviceUrl: "{champion}", data: $request, dependency: Hard}]}""",
    "sequence-unset-error-fed-forward": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{broken}"}, {serviceUrl: "{champion}", data: $response, dependency: Hard}]}""",
    "sequence-last-soft-step-fails": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{champion}", dependency: Hard}, {serviceUrl: "{broken}", dependency: Soft}]}""",
    "sequence-hard-error-stops": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{broken}", dependency: Hard}, {serviceUrl: "{champion}", data: $request}]}""",
    "sequence-unreachable-soft-step": """
        root: {routerType: Sequence, steps: [
          {name: challenger, serviceUrl: "{dead}", dependency: Soft},
          {name: champion, serviceUrl: "{champion}", data: $request, dependency: Hard}]}""",
    "sequence-unreachable-hard-step": """
        root: {routerType: Sequence, steps: [{serviceUrl: "{dead}", dependency: Hard}]}""",
    "sequence-conditions": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{champion}", dependency: Soft},
          {nodeName: holds, condition: "predictions.#", data: $request},
          {serviceUrl: "{champion}", condition: "outputs", data: $request}]}
        holds: {routerType: Sequence, steps: [{serviceUrl: "{challenger}"}]}""",
    "sequence-condition-after-soft-error": """
        root: {routerType: Sequence, steps: [
          {serviceUrl: "{broken}", dependency: Soft},
          {serviceUrl: "{champion}", condition: "error", data: $request},
          {serviceUrl: "{challenger}", condition: "predictions", data: $request}]}""",
    "switch-conditions": """
        root: {routerType: Switch, steps: [
          {serviceUrl: "{champion}", condition: 'instances.#(SPECIALISME=="Oogheelkunde")'},
          {serviceUrl: "{challenger}", condition: 'instances.#(SPECIALISME%"Cardio*")'},
          {nodeName: by-id, condition: 'inputs.#(name=="SPECIALISME").data.#(=="Urologie")'},
          {serviceUrl: "{broken}", condition: 'instances.0.TYPE_WACHTTIJD', dependency: Hard}]}
        by-id: {routerType: Switch, steps: [
          {serviceUrl: "{dead}", condition: 'id', dependency: Soft}]}""",
    "switch-comparisons": """
        root: {routerType: Switch, steps: [
          {serviceUrl: "{dead}", condition: 'instances.#(ROAZ_REGIO<"Acute")'},
          {serviceUrl: "{challenger}", condition: 'instances.1'},
          {serviceUrl: "{broken}", condition: 'instances.#(TYPE_WACHTTIJD!="Behandeling")'},
          {serviceUrl: "{champion}", condition: 'inputs.#(shape.0>1).datatype'}]}""",
    "splitter-weights-100-0-and-nodes": """
        root: {routerType: Splitter, steps: [
          {serviceUrl: "{champion}", weight: 0}, {nodeName: always-challenger, weight: 100}]}
        always-challenger: {routerType: Splitter, steps: [
          {serviceUrl: "{challenger}", weight: 100}, {serviceUrl: "{champion}", weight: 0}]}""",
    "splitter-to-unreachable-soft-step": """
        root: {routerType: Splitter, steps: [{serviceUrl: "{dead}", weight: 100, dependency: Soft}]}""",
    "ensemble-named-unnamed-and-soft-error": """
        root: {routerType: Ensemble, steps: [
          {name: champion, serviceUrl: "{champion}"}, {name: challenger, serviceUrl: "{challenger}"},
          {serviceUrl: "{challenger}"}, {name: broken, serviceUrl: "{broken}", dependency: Soft}]}""",
    "ensemble-hard-error-decides": """
        root: {routerType: Ensemble, steps: [
          {serviceUrl: "{champion}", dependency: Hard}, {serviceUrl: "{broken}", dependency: Hard}]}""",
    "ensemble-unreachable-soft-step": """
        root: {routerType: Ensemble, steps: [
          {serviceUrl: "{champion}"}, {serviceUrl: "{dead}", dependency: Soft}]}""",
    "sequence-of-ensemble-and-switch": """
        root: {routerType: Sequence, steps: [
          {nodeName: both, dependency: Hard},
          {nodeName: pick, data: $response, condition: champion.predictions}]}
        both: {routerType: Ensemble, steps: [
          {name: champion, serviceUrl: "{champion}"}, {name: challenger, serviceUrl: "{challenger}"}]}
        pick: {routerType: Switch, steps: [{serviceUrl: "{champion}", condition: challenger.predictions.1}]}""",
    "nested-routing-errors": """
        root: {routerType: Ensemble, steps: [
          {name: champion, serviceUrl: "{champion}"}, {name: picked, nodeName: split, dependency: Soft}]}
        split: {routerType: Splitter, steps: [{nodeName: pick, weight: 100}]}
        pick: {routerType: Switch, steps: [
          {serviceUrl: "{challenger}", condition: 'instances.#(SPECIALISME=="Urologie")'}]}""",
}

# What KServe's router answers the "v1" request for each graph: a check that the graphs do what their
# names say, so that two routers failing alike (say, with no model server reachable) cannot pass.
V1_STATUS = {
    "sequence-request-after-soft-shadow": 200,
    "sequence-response-chain": 400,  # the challenger gets the champion's {"predictions": ...}
    "sequence-map-predictions-to-instances": 400,  # ... as {"instances": [numbers]}, not rows
    "sequence-soft-error-then-request": 200,
    "sequence-unset-error-fed-forward": 400,
    "sequence-last-soft-step-fails": 404,
    "sequence-hard-error-stops": 404,
    "sequence-unreachable-soft-step": 500,
    "sequence-unreachable-hard-step": 500,
    "sequence-conditions": 200,
    "sequence-condition-after-soft-error": 200,
    "switch-conditions": 200,
    "switch-comparisons": 200,
    "splitter-weights-100-0-and-nodes": 200,
    "splitter-to-unreachable-soft-step": 500,
    "ensemble-named-unnamed-and-soft-error": 200,
    "ensemble-hard-error-decides": 404,
    "ensemble-unreachable-soft-step": 500,
    "sequence-of-ensemble-and-switch": 400,
    "nested-routing-errors": 200,
}


@pytest.fixture(scope="module")
def servers(champion_model_dir, challenger_model_dir, tmp_path_factory) -> Iterator[dict[str, Service]]:
    log_dir = tmp_path_factory.mktemp("fidelity-servers")
    specs = {"champion": {"model_uri": champion_model_dir}, "challenger": {"model_uri": challenger_model_dir}}
    with model_servers(specs, log_dir) as services:
        yield services


@pytest.fixture(scope="module")
def urls(servers) -> dict[str, str]:
    return {
        "champion": servers["champion"].url + V1_PATH,
        "challenger": servers["challenger"].url + V1_PATH,
        "broken": servers["champion"].url + "/v1/models/nonexistent:predict",  # answers 404 with JSON
        "dead": f"http://127.0.0.1:{free_port()}{V1_PATH}",  # nothing listens there: connection refused
    }


def graph_spec(nodes: str, urls: dict[str, str]) -> dict[str, Any]:
    text = nodes
    for name, url in urls.items():
        text = text.replace("{" + name + "}", url)
    return {"nodes": yaml.safe_load(text)}


@contextmanager
def both_routers(tmp_path: Path, spec: dict[str, Any], servers) -> Iterator[dict[str, Service]]:
    """KServe's router and the Python router for one graph spec (the same spec, as KServe's controller passes it)."""
    name = f"graph-{uuid.uuid4().hex[:6]}"
    manifest = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph",
                "metadata": {"name": name}, "spec": spec}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    # The KServe router may call the model servers and nothing else (the dead port stays closed).
    ports = [urlsplit(service.url).port for service in servers.values()]
    with kserve_router(BINARY, spec, ports, tmp_path, name=f"{name}-kserve") as kserve:
        with router([path], {}, tmp_path, name=f"{name}-local") as local:
            yield {"kserve": kserve, "local": local}


def exchange(routers: dict[str, Service], body: bytes, path: str = V1_PATH, method: str = "POST"):
    # A fixed x-request-id: both routers pass it on, so V2 answers carry the same id.
    headers = {"content-type": "application/json", "x-request-id": f"fidelity-{uuid.uuid4().hex[:8]}"}
    return {
        side: requests.request(method, service.url + path, data=body, headers=headers, timeout=60)
        for side, service in routers.items()
    }


def same_json(left: Any, right: Any) -> bool:
    """Equal JSON values; numbers within the model server's batching tolerance (BATCH_RTOL)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_json(a, b) for a, b in zip(left, right, strict=True))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
        return math.isclose(left, right, rel_tol=BATCH_RTOL)
    return type(left) is type(right) and left == right


def assert_same(answers: dict[str, requests.Response], what: str) -> Any:
    kserve, local = answers["kserve"], answers["local"]
    report = (
        f"{what}:\n  kserve {kserve.status_code} {kserve.text[:400]}\n  local  {local.status_code} {local.text[:400]}"
    )
    assert local.status_code == kserve.status_code, report
    expected, actual = json.loads(kserve.content), json.loads(local.content)
    if isinstance(expected, dict) and expected.get("error") == ROUTING_FAILED and expected["cause"].startswith("Post "):
        # A step gave no HTTP answer: Go and httpx word the cause differently; both name the URL.
        url = expected["cause"].split('"')[1]
        assert actual.keys() == expected.keys() and actual["error"] == ROUTING_FAILED, report
        assert url in actual["cause"], report
    else:
        assert same_json(expected, actual), report
    content_types = {side: a.headers.get("content-type", "").split(";")[0] for side, a in answers.items()}
    assert content_types["local"] == content_types["kserve"], report
    return expected


@pytest.mark.parametrize("graph", GRAPHS)
def test_same_status_and_body_for_every_request(graph, tmp_path, servers, urls):
    statuses = {}
    with both_routers(tmp_path, graph_spec(GRAPHS[graph], urls), servers) as routers:
        for name, body in REQUESTS.items():
            path = V2_PATH if name == "v2" else V1_PATH
            answers = exchange(routers, body, path)
            assert_same(answers, f"{graph} / {name}")
            statuses[name] = answers["kserve"].status_code
    assert statuses["v1"] == V1_STATUS[graph], statuses


def test_unreachable_soft_step_fails_the_request_in_both(tmp_path, servers, urls):
    """The issue that started this file: KServe does not continue past a Soft step that gives no
    HTTP answer; only an HTTP error status is what Soft lets pass."""
    spec = graph_spec(GRAPHS["sequence-unreachable-soft-step"], urls)
    with both_routers(tmp_path, spec, servers) as routers:
        answers = exchange(routers, REQUESTS["v1"])
        body = assert_same(answers, "unreachable soft step")
    assert answers["kserve"].status_code == 500 and body["error"] == ROUTING_FAILED


def test_splitter_spreads_requests_over_both_steps_in_both(tmp_path, servers, urls):
    spec = graph_spec("""
        root: {routerType: Splitter, steps: [
          {serviceUrl: "{champion}", weight: 50}, {serviceUrl: "{challenger}", weight: 50}]}""", urls)
    direct = {
        name: requests.post(urls[name], data=REQUESTS["v1"], timeout=60).json()["predictions"]
        for name in ("champion", "challenger")
    }
    picked: dict[str, set[str]] = {"kserve": set(), "local": set()}
    with both_routers(tmp_path, spec, servers) as routers:
        for _ in range(40):  # both targets stay unpicked with probability 2 * 0.5**40
            for side, answer in exchange(routers, REQUESTS["v1"]).items():
                assert answer.status_code == 200, answer.text
                predictions = answer.json()["predictions"]
                picked[side] |= {name for name, expected in direct.items() if same_json(expected, predictions)}
    assert picked == {"kserve": {"champion", "challenger"}, "local": {"champion", "challenger"}}


def test_any_path_and_method_runs_the_graph_in_both(tmp_path, servers, urls):
    spec = graph_spec(GRAPHS["sequence-request-after-soft-shadow"], urls)
    with both_routers(tmp_path, spec, servers) as routers:
        assert_same(exchange(routers, REQUESTS["v1"], path="/"), "POST /")
        assert_same(exchange(routers, REQUESTS["v1"], path="/anything/else"), "POST /anything/else")
        assert_same(exchange(routers, b"", path="/v1/models/wachttijden", method="GET"), "GET with no body")
