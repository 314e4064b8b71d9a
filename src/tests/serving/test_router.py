"""The local router as a real process in front of two real model servers: every node type, dependencies, mirroring."""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests

from models.wachttijden.schema import FEATURES
from tests.serving.logs import read_records, wait_for_records, wait_for_request
from tests.serving.servers import (
    SERVING_ENV,
    Service,
    mirror_virtual_service,
    model_servers,
    router,
    router_command,
)
from tests.serving.small_model import SAMPLE_ROWS
from tests.support.processes import REPO_ROOT, free_port

ROWS = SAMPLE_ROWS
V1_BODY = {"instances": ROWS}
V1_PATH = "/v1/models/wachttijden:predict"
V2_PATH = "/v2/models/wachttijden/infer"


def v2_body(rows: list[dict]) -> dict:
    return {
        "inputs": [
            {"name": n, "datatype": "BYTES", "shape": [len(rows)], "data": [r[n] for r in rows]}
            for n in FEATURES
        ]
    }


@pytest.fixture(scope="module")
def servers(champion_model_dir, challenger_model_dir, tmp_path_factory) -> Iterator[dict[str, Service]]:
    log_dir = tmp_path_factory.mktemp("router-servers")
    specs = {
        role: {
            "model_uri": model_dir,
            "prediction_log": log_dir / f"{role}.jsonl",
            "extra_args": ["--model-version", version],
        }
        for role, model_dir, version in (
            ("champion", champion_model_dir, "1"),
            ("challenger", challenger_model_dir, "2"),
        )
    }
    with model_servers(specs, log_dir) as services:
        for role, service in services.items():
            service.prediction_log = specs[role]["prediction_log"]
        yield services


@pytest.fixture(scope="module")
def direct(servers) -> dict[str, list[float]]:
    """Each server's own answer to V1_BODY, to recognise who answered through the router."""
    answers = {}
    for role, service in servers.items():
        answers[role] = requests.post(service.url + V1_PATH, json=V1_BODY, timeout=30).json()["predictions"]
    assert not np.allclose(answers["champion"], answers["challenger"], atol=1e-3), "models should differ"
    return answers


@pytest.fixture(scope="module")
def resolve(servers) -> dict[str, str]:
    dead_port = free_port()  # nothing listens there: connection refused
    return {
        "champion": servers["champion"].url,
        "challenger": servers["challenger"].url,
        "broken": servers["champion"].url + "/v1/models/nonexistent:predict",  # answers 404
        "dead": f"http://127.0.0.1:{dead_port}",
    }


@contextmanager
def graph_router(tmp_path: Path, nodes: str, resolve: dict[str, str], extra=()) -> Iterator[Service]:
    spec = tmp_path / f"graph-{uuid.uuid4().hex[:6]}.yaml"
    spec.write_text(
        "apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceGraph\nmetadata:\n  name: wachttijden-graph\n"
        "spec:\n  nodes:\n" + textwrap.indent(textwrap.dedent(nodes), "    "),
        encoding="utf-8",
    )
    with router([spec], resolve, tmp_path, name=spec.stem, extra_args=extra) as service:
        yield service


def post(
    service: Service, body: dict, path: str = V1_PATH, request_id: str | None = None
) -> requests.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    return requests.post(service.url + path, json=body, headers=headers, timeout=30)


class TestSequence:
    def test_request_data_reaches_the_champion_after_a_soft_shadow(self, tmp_path, resolve, servers, direct):
        nodes = """\
            root:
              routerType: Sequence
              steps:
              - serviceName: challenger
                name: challenger
                dependency: Soft
              - serviceName: champion
                name: champion
                data: $request
                dependency: Hard
            """
        # The deploy builders' mirror graph: a step named challenger is logged as the shadow.
        with graph_router(tmp_path, nodes, resolve) as service:
            response = post(service, V1_BODY, request_id="seq-request-1")
            v2 = post(service, v2_body(ROWS), path=V2_PATH, request_id="seq-request-2")
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["predictions"], direct["champion"], atol=1e-5)
        assert v2.status_code == 200, v2.text
        np.testing.assert_allclose(v2.json()["outputs"][0]["data"], direct["champion"], atol=1e-5)
        # Both servers logged the same request id, each with its role: the logs join.
        (champion,) = wait_for_request(servers["champion"].prediction_log, "seq-request-1")
        (shadow,) = wait_for_request(servers["challenger"].prediction_log, "seq-request-1")
        assert (champion["role"], shadow["role"]) == ("champion", "shadow")
        np.testing.assert_allclose(shadow["outputs"], direct["challenger"], atol=1e-5)

    def test_soft_failure_continues_and_response_data_is_the_previous_answer(self, tmp_path, resolve):
        nodes = """\
            root:
              routerType: Sequence
              steps:
              - serviceName: broken
                dependency: Soft
              - serviceName: champion
                data: $response
                dependency: Hard
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            response = post(service, V1_BODY)
        # The champion received the broken step's error body as its request, and says so.
        assert response.status_code == 400
        assert "no 'instances'" in response.json()["error"] and "'error'" in response.json()["error"]

    @pytest.mark.parametrize("dependency", ["Soft", "Hard"])
    def test_step_that_cannot_be_reached_fails_the_request_with_500(self, tmp_path, resolve, dependency):
        # KServe's router: Soft lets an HTTP error status pass, never a step that gives no answer.
        nodes = f"""\
            root:
              routerType: Sequence
              steps:
              - serviceName: dead
                dependency: {dependency}
              - serviceName: champion
                data: $request
                dependency: Hard
            """
        log = tmp_path / "router.jsonl"
        with graph_router(tmp_path, nodes, resolve, extra=["--prediction-log", str(log)]) as service:
            response = post(service, V1_BODY, request_id=f"unreachable-{dependency}")
        assert response.status_code == 500
        body = response.json()
        assert body["error"] == "Failed to process request" and "did not answer" in body["cause"]
        assert body["cause"].startswith("dead at http://127.0.0.1:")
        # The router logs each call before it answers: the sequence stopped at the dead step.
        calls = [r for r in read_records(log) if r["request_id"] == f"unreachable-{dependency}"]
        assert [r["target"] for r in calls] == ["dead"]

    def test_hard_failure_stops_the_sequence_with_its_status(self, tmp_path, resolve, servers):
        nodes = """\
            root:
              routerType: Sequence
              steps:
              - serviceName: broken
                dependency: Hard
              - serviceName: champion
                data: $request
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            response = post(service, V1_BODY, request_id="seq-hard-1")
        assert response.status_code == 404
        assert "nonexistent" in response.json()["error"]
        # The champion server saw only the broken step's call (404), never the second step.
        (only,) = wait_for_request(servers["champion"].prediction_log, "seq-hard-1")
        assert only["status"] == "error"


class TestOtherNodes:
    def test_switch_picks_the_first_matching_condition(self, tmp_path, resolve, direct):
        nodes = """\
            root:
              routerType: Switch
              steps:
              - serviceName: champion
                condition: 'instances.#(SPECIALISME=="Oogheelkunde")'
              - serviceName: challenger
                condition: 'instances.#(SPECIALISME=="Cardiologie")'
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            matched = post(service, V1_BODY)
            unmatched = post(service, {"instances": [ROWS[1]]})
        np.testing.assert_allclose(matched.json()["predictions"], direct["challenger"], atol=1e-5)
        assert unmatched.status_code == 404
        assert unmatched.json() == {
            "error": "Failed to process request",
            "cause": "None of the routes matched with the switch condition",
        }

    def test_ensemble_returns_each_step_keyed_by_name(self, tmp_path, resolve, direct):
        nodes = """\
            root:
              routerType: Ensemble
              steps:
              - serviceName: champion
                name: champion
              - serviceName: challenger
                name: challenger
              - serviceName: broken
                name: broken
                dependency: Soft
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            response = post(service, V1_BODY)
        assert response.status_code == 200
        body = response.json()
        np.testing.assert_allclose(body["champion"]["predictions"], direct["champion"], atol=1e-5)
        np.testing.assert_allclose(body["challenger"]["predictions"], direct["challenger"], atol=1e-5)
        assert "nonexistent" in body["broken"]["error"]

    def test_ensemble_hard_failure_decides_the_response(self, tmp_path, resolve):
        nodes = """\
            root:
              routerType: Ensemble
              steps:
              - serviceName: champion
              - serviceName: broken
                dependency: Hard
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            assert post(service, V1_BODY).status_code == 404

    def test_splitter_follows_weights_and_node_references(self, tmp_path, resolve, direct):
        nodes = """\
            root:
              routerType: Sequence
              steps:
              - nodeName: split
            split:
              routerType: Splitter
              steps:
              - serviceName: champion
                weight: 50
              - nodeName: always-challenger
                weight: 50
            always-challenger:
              routerType: Splitter
              steps:
              - serviceName: challenger
                weight: 100
              - serviceName: champion
                weight: 0
            """
        with graph_router(tmp_path, nodes, resolve) as service:
            answers = [post(service, V1_BODY).json()["predictions"] for _ in range(30)]
        seen = {
            ("champion" if np.allclose(a, direct["champion"], atol=1e-5) else "challenger") for a in answers
        }
        assert seen == {"champion", "challenger"}


def test_malformed_graph_makes_the_router_exit_non_zero_naming_node_and_field(tmp_path, resolve):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceGraph\nmetadata:\n  name: bad\nspec:\n  nodes:\n"
        "    root:\n      routerType: Splitter\n      steps:\n      - serviceName: champion\n        weight: 70\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        router_command([spec], resolve, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env={**SERVING_ENV, "PATH": "/usr/bin:/bin"},
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "node 'root'" in result.stderr and "weights sum to 70" in result.stderr




@contextmanager
def mirror_router(tmp_path: Path, resolve: dict[str, str], percentage: float) -> Iterator[Service]:
    spec = tmp_path / f"mirror-{int(percentage)}.yaml"
    spec.write_text(mirror_virtual_service(percentage), encoding="utf-8")
    log = tmp_path / f"router-{int(percentage)}.jsonl"
    routing = {k: v for k, v in resolve.items() if k in ("champion", "challenger")}
    with router(
        [spec], routing, tmp_path, name=spec.stem, extra_args=["--prediction-log", str(log)]
    ) as service:
        service.prediction_log = log
        yield service


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout:.0f} s"
        time.sleep(0.1)


class TestMirror:
    # Runs last in this module: the final test stops the challenger server.

    def test_zero_percent_mirrors_nothing(self, tmp_path, resolve, servers):
        with mirror_router(tmp_path, resolve, 0) as service:
            ids = [f"mirror0-{i}" for i in range(5)]
            for request_id in ids:
                assert post(service, V1_BODY, request_id=request_id).status_code == 200
        # Once the champion has logged every request, a copy would have reached the challenger too.
        for request_id in ids:
            wait_for_request(servers["champion"].prediction_log, request_id)
        challenger_ids = {r["request_id"] for r in read_records(servers["challenger"].prediction_log)}
        assert not challenger_ids & set(ids)

    def test_champion_answers_and_shadow_copies_share_request_ids(self, tmp_path, resolve, servers, direct):
        with mirror_router(tmp_path, resolve, 100) as service:
            ids = [f"mirror-{i}" for i in range(10)]
            for request_id in ids:
                response = post(service, V1_BODY, request_id=request_id)
                assert response.status_code == 200
                assert response.headers["x-request-id"] == request_id
                np.testing.assert_allclose(response.json()["predictions"], direct["champion"], atol=1e-5)
            for request_id in ids:
                wait_for_request(servers["challenger"].prediction_log, request_id)
            stats = requests.get(service.url + "/stats", timeout=5).json()
        for request_id in ids:
            (champion,) = wait_for_request(servers["champion"].prediction_log, request_id)
            (shadow,) = wait_for_request(servers["challenger"].prediction_log, request_id)
            assert (champion["role"], shadow["role"]) == ("champion", "shadow")
            assert champion["model_version"] == "1" and shadow["model_version"] == "2"
            routed = {r["role"]: r for r in wait_for_request(service.prediction_log, request_id, count=2)}
            assert routed["champion"]["status_code"] == 200 and routed["shadow"]["status_code"] == 200
            assert routed["shadow"]["target"] == "challenger"
        assert stats["mirrored"] == 10 and stats["mirror_dropped"] == 0

    def test_champion_keeps_answering_while_the_challenger_is_stopped(
        self, tmp_path, resolve, servers, direct
    ):
        from tests.support.processes import stop_process

        with mirror_router(tmp_path, resolve, 100) as service:
            for i in range(5):
                assert post(service, V1_BODY, request_id=f"before-stop-{i}").status_code == 200
            stop_process(servers["challenger"].proc)
            answers = [post(service, V1_BODY, request_id=f"stopped-{i}") for i in range(20)]
            wait_for(lambda: requests.get(service.url + "/stats", timeout=5).json()["mirror_inflight"] == 0)
            stats = requests.get(service.url + "/stats", timeout=5).json()
        assert [a.status_code for a in answers] == [200] * 20
        for answer in answers:
            np.testing.assert_allclose(answer.json()["predictions"], direct["champion"], atol=1e-5)
        assert stats["mirror_failed"] == 20
        failed = wait_for_records(
            service.prediction_log, lambda r: r["role"] == "shadow" and r["status"] == "error", count=20
        )
        assert len(failed) == 20 and all(r["status_code"] is None for r in failed)
