"""The smoke test of a deployment: one finite prediction per sample row, through the entry point and the challenger."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tasks.deploy import smoke
from tasks.deploy.deployment import Deployment
from tests.support.processes import REPO_ROOT, free_port


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
        assert smoke.smoke_predict(stand_in.url, BODY) == [3.5, 7.0]
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
            smoke.smoke_predict(stand_in.url, BODY)

    def test_should_show_the_servers_error(self, stand_in):
        stand_in.status, stand_in.body = 500, {"error": "model crashed"}
        with pytest.raises(RuntimeError, match=r"HTTP 500.*model crashed"):
            smoke.smoke_predict(stand_in.url, BODY)

    def test_should_say_when_the_endpoint_is_down(self):
        url = f"http://127.0.0.1:{free_port()}/v2/models/wachttijden/infer"
        with pytest.raises(RuntimeError, match="failed: .*refused"):
            smoke.smoke_predict(url, BODY, timeout=2)


class TestSmokeTest:
    def test_should_send_the_packaged_sample_rows(self):
        body = smoke.smoke_body()
        assert smoke.SMOKE_REQUEST.parent.name == "deploy"
        assert {i["name"] for i in body["inputs"]} == {
            "TYPE_WACHTTIJD", "SPECIALISME", "ROAZ_REGIO", "TYPE_ZORGINSTELLING"}
        # The prediction scripts post the tests' copy: both must stay the same request.
        assert body == json.loads((REPO_ROOT / "src" / "tests" / "data" / "testdata.json").read_text())

    def test_should_predict_through_the_entry_and_the_challenger_directly(self, stand_in):
        stand_in.body = answer([2], [1.0, 2.0])
        base = stand_in.url.removesuffix("/v2/models/wachttijden/infer")
        deployment = Deployment(
            target="local", model_name="wachttijden", entry="router", entry_path="/v2/models/wachttijden/infer",
            challenger="challenger", urls={"router": base, "challenger": base},
        )
        assert smoke.smoke_test(deployment, BODY) == {"router": [1.0, 2.0], "challenger": [1.0, 2.0]}
        assert [r["path"] for r in stand_in.requests] == ["/v2/models/wachttijden/infer"] * 2
