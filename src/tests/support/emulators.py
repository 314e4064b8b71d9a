"""Start the storage emulators the data lake tests run against: Azurite (Azure Blob) and moto (S3)."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import REPO_ROOT, free_port, http_ok, start_process, stop_process, wait_until

# Installed by `npm ci` from the repo's package-lock.json.
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's built-in development account. Microsoft publishes this key in the Azurite docs;
# it only opens the local emulator, so it is not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# moto's server only checks that S3 requests are signed, not with what.
MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing"
MOTO_REGION = "us-east-1"
STARTUP_TIMEOUT = 60.0


def azurite_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def moto_server_binary() -> Path:
    """moto_server from the virtual environment running the tests, else from PATH."""
    local = Path(sys.executable).parent / "moto_server"
    if local.exists():
        return local
    found = shutil.which("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server not found: install moto[server] in the test environment")
    return Path(found)


def _azurite_ready(connection_string: str) -> bool:
    from azure.storage.blob import BlobServiceClient

    # no retries: wait_until does the polling, and SDK back-off would only slow it down
    client = BlobServiceClient.from_connection_string(connection_string, retry_total=0)
    with client:
        client.get_service_properties()
    return True


@contextlib.contextmanager
def run_azurite(tmp_path: Path) -> Iterator[str]:
    """Run Azurite's blob service on a free loopback port, data in `tmp_path`; yield a connection string."""
    if not AZURITE_BLOB.exists():
        raise FileNotFoundError(f"{AZURITE_BLOB} is missing: run `npm ci` in {REPO_ROOT}")
    port = free_port()
    log_path = tmp_path / "azurite.log"
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(AZURITE_BLOB),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(data),
        "--silent",
        # the Python SDK may speak a newer REST API version than this Azurite release knows
        "--skipApiVersionCheck",
        "--loose",
        # no reports to Microsoft from test runs; with telemetry on, Azurite also keeps its
        # event loop alive after SIGTERM and stop_process has to wait for SIGKILL
        "--disableTelemetry",
    ]
    connection_string = azurite_connection_string(port)
    proc = start_process(cmd, log_path=log_path)
    try:
        wait_until(
            lambda: _azurite_ready(connection_string),
            timeout=STARTUP_TIMEOUT, what="Azurite", proc=proc, log_path=log_path,
        )
        yield connection_string
    finally:
        stop_process(proc)


@contextlib.contextmanager
def run_moto_s3(log_path: Path | None = None) -> Iterator[str]:
    """Run a moto S3 server on a free loopback port; yield its endpoint URL."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moto-"))) / "moto.log"
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = start_process(
            [str(moto_server_binary()), "-H", "127.0.0.1", "-p", str(port)], log_path=log_path
        )
        try:
            wait_until(
                lambda: http_ok(f"{endpoint}/moto-api/"),
                timeout=STARTUP_TIMEOUT, what="moto S3 server", proc=proc, log_path=log_path,
            )
            yield endpoint
        finally:
            stop_process(proc)
