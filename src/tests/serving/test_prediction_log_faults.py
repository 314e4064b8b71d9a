"""A prediction log that cannot be written never costs a client its answer or its connection."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import requests

from tests.serving.logs import wait_for_text
from tests.serving.servers import model_server

ROW = {
    "TYPE_WACHTTIJD": "Behandeling",
    "SPECIALISME": "Cardiologie",
    "ROAZ_REGIO": "Acute Zorgregio Oost",
    "TYPE_ZORGINSTELLING": "Ziekenhuis",
}
V1 = "/v1/models/wachttijden:predict"
V2 = "/v2/models/wachttijden/infer"
MAX_ROWS = 50


def v2_body(parameters: bool = False) -> dict:
    body: dict = {"inputs": [{"name": n, "datatype": "BYTES", "shape": [1], "data": [v]} for n, v in ROW.items()]}
    if parameters:
        body["parameters"] = {"x": 1}  # not a plain request: KServe's own route answers it
    return body


# (path, body, expected status): the fast path, KServe's route, and errors from both.
MIX = [
    (V1, {"instances": [ROW]}, 200),
    (V2, v2_body(), 200),
    (V2, v2_body(parameters=True), 200),
    # SPECIALISME is open (answered through the out-of-vocabulary bucket); TYPE_ZORGINSTELLING is closed.
    (V1, {"instances": [{**ROW, "SPECIALISME": "Tandheelkunde"}]}, 200),
    (V1, {"instances": [{**ROW, "TYPE_ZORGINSTELLING": "Huisarts"}]}, 400),
    (V1, b'{"instances": [', 400),
    (V1, {"instances": [ROW] * (MAX_ROWS + 1)}, 413),
    (V2, b"", 400),
]


@pytest.fixture(scope="module")
def unwritable(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server whose every prediction-log write fails: /dev/full answers each write() with ENOSPC."""
    log_dir = tmp_path_factory.mktemp("log-faults")
    with model_server(
        champion_model_dir,
        log_dir,
        prediction_log=Path("/dev/full"),
        extra_args=["--max-rows", str(MAX_ROWS)],
    ) as service:
        yield service


def raw_request(sock: socket.socket, port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive request on an open socket: (status, body)."""
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def test_every_request_is_answered_on_one_kept_alive_connection(unwritable):
    port = int(unwritable.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # Three rounds of the mix on the same connection: a reset after any answer fails the next request.
        for _ in range(3):
            for path, body, expected in MIX:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                status, content = raw_request(sock, port, path, data)
                assert status == expected, content


def test_failures_are_counted_reported_once_and_flagged_degraded(unwritable):
    for path, body, _ in MIX:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        requests.post(unwritable.url + path, data=data, headers={"content-type": "application/json"}, timeout=30)
    metrics = requests.get(f"{unwritable.url}/metrics", timeout=10).text
    errors = re.search(r"^sluice_prediction_log_write_errors_total (\S+)$", metrics, re.MULTILINE)
    assert errors is not None, "no write-error counter on /metrics"
    assert float(errors.group(1)) >= len(MIX)
    assert re.search(r"^sluice_prediction_log_degraded 1\.0$", metrics, re.MULTILINE), metrics
    # Readiness stays 200 (the predictions are right) and says what is degraded.
    ready = requests.get(f"{unwritable.url}/v2/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert ready.headers.get("x-sluice-degraded") == "prediction-log"
    # One warning with the count per interval, not a traceback per request.
    text = wait_for_text(unwritable.log_path, "prediction log")
    assert "Traceback" not in text
    assert len(re.findall(r"prediction log .* write", text)) <= 2, text[-3000:]
