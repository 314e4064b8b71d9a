"""A bounded soak of the model server with mixed good, bad and oversized requests: no lost connection, no 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import requests

from tests.serving.logs import wait_for_records
from tests.serving.servers import model_servers
from tests.serving.soak_load import SOAK_SERVER_ARGS, request_mix, soak

CONCURRENCY = 16
SECONDS = 15  # per phase: 30 s of load in all, within the 30-60 s a soak in the suite may take
MAX_REQUESTS = 60_000


@pytest.fixture(scope="module")
def soak_servers(champion_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server logging to a file and one whose every log write fails (/dev/full), started together."""
    log_dir = tmp_path_factory.mktemp("soak")
    specs = {
        "logging": {
            "model_uri": champion_model_dir,
            "prediction_log": log_dir / "predictions.jsonl",
            "extra_args": SOAK_SERVER_ARGS,
        },
        "unwritable log": {
            "model_uri": champion_model_dir,
            "prediction_log": Path("/dev/full"),
            "extra_args": SOAK_SERVER_ARGS,
        },
    }
    with model_servers(specs, log_dir) as services:
        yield services, specs


@pytest.mark.parametrize("name", ["logging", "unwritable log"])
def test_soak_answers_every_request_with_its_status(soak_servers, name):
    services, specs = soak_servers
    service = services[name]
    port = int(service.url.rsplit(":", 1)[1])
    result = asyncio.run(soak(port, concurrency=CONCURRENCY, seconds=SECONDS, max_requests=MAX_REQUESTS))
    mix = request_mix()
    assert result.connection_errors == 0
    assert result.server_errors == 0
    assert result.unexpected(mix) == {}, "every valid request 200, every invalid one its 4xx"
    assert set(result.by_class) == {c.name for c in mix}, "every class was sent"
    assert result.requests >= 200, f"only {result.requests} requests in {result.seconds:.0f} s"
    assert service.proc.poll() is None
    assert requests.get(f"{service.url}/v2/health/ready", timeout=10).status_code == 200
    if name == "logging":
        # One complete line per answered request, whatever its status.
        logged = wait_for_records(specs[name]["prediction_log"], lambda r: True, count=result.requests)
        assert len(logged) == result.requests
