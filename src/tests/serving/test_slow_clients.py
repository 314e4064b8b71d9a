"""Slow or idle clients cannot hold the model server: bodies have a read deadline, connections a cap."""

from __future__ import annotations

import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.serving.servers import model_server

BODY_TIMEOUT_S = 2
MAX_CONNECTIONS = 40
SLOW_CLIENTS = 30  # fewer than MAX_CONNECTIONS: the body deadline alone must free them
ROW = {
    "TYPE_WACHTTIJD": "Behandeling",
    "SPECIALISME": "Cardiologie",
    "ROAZ_REGIO": "Acute Zorgregio Oost",
    "TYPE_ZORGINSTELLING": "Ziekenhuis",
}


@pytest.fixture(scope="module")
def guarded(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("slow-clients")
    extra = ["--body-read-timeout-s", str(BODY_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS)]
    with model_server(champion_model_dir, log_dir, extra_args=extra) as service:
        service.port = int(service.url.rsplit(":", 1)[1])
        yield service


def predict_ok(url: str) -> float:
    """Seconds one normal prediction took; fails unless it is answered 200."""
    start = time.monotonic()
    response = requests.post(f"{url}/v1/models/wachttijden:predict", json={"instances": [ROW]}, timeout=10)
    assert response.status_code == 200, response.text
    return time.monotonic() - start


def send_headers(port: int, path: str = "/v1/models/wachttijden:predict") -> socket.socket:
    """A connection that has sent a request's headers (declaring 1,000 body bytes) and one body byte."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=1)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{".encode()
    )
    return sock


def trickle(port: int, stop: threading.Event) -> tuple[bytes, float]:
    """Send one more body byte every 0.2 s until the server ends the connection: (what it answered, seconds)."""
    start = time.monotonic()
    answer = b""
    with send_headers(port) as sock:
        while not stop.is_set():
            try:
                if select.select([sock], [], [], 0.2)[0]:
                    chunk = sock.recv(4096)
                    if not chunk:  # closed by the server
                        break
                    answer += chunk
                else:
                    sock.sendall(b" ")
            except OSError:  # reset: the server closed while a byte was on its way, as TCP does
                break
    return answer, time.monotonic() - start


def test_a_stalled_body_is_answered_408_and_the_connection_closed(guarded):
    with send_headers(guarded.port) as sock:
        sock.settimeout(BODY_TIMEOUT_S + 5)
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert f"request body not received within {BODY_TIMEOUT_S} s".encode() in answer


def test_trickling_clients_are_cut_off_at_the_deadline_while_others_are_served(guarded):
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=SLOW_CLIENTS) as pool:
        slow = [pool.submit(trickle, guarded.port, stop) for _ in range(SLOW_CLIENTS)]
        try:
            time.sleep(0.5)
            # Normal clients are answered promptly while the slow ones are held.
            assert max(predict_ok(guarded.url) for _ in range(5)) < BODY_TIMEOUT_S
            # Bounded: a connection the server never ends fails here (TimeoutError) instead of hanging.
            results = [f.result(timeout=BODY_TIMEOUT_S + 8) for f in slow]
        finally:
            stop.set()
    for answer, seconds in results:
        assert seconds < BODY_TIMEOUT_S + 3
        # Whatever arrived before the close is the 408 (a reset can swallow it: the client was still sending).
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert any(answer for answer, _ in results), "no slow client saw the 408 at all"


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(guarded):
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", guarded.port), timeout=5))
        time.sleep(0.3)  # let the server accept them all
        response = requests.post(
            f"{guarded.url}/v1/models/wachttijden:predict", json={"instances": [ROW]}, timeout=10
        )
        assert response.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the closed sockets within a moment
        try:
            predict_ok(guarded.url)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "still refusing after the idle connections closed"
            time.sleep(0.2)
