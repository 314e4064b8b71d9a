"""KServe's own InferenceGraph router (the Go binary scripts/build-cluster-tools.sh builds) as a test service."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tasks.deploy.versions import read_versions
from tests.serving.servers import Service
from tests.support.processes import REPO_ROOT, free_port, http_ok, start_process, stop_process, wait_until

# KServe's constants.RouterPort: the binary has no flag for it and listens on every interface.
KSERVE_ROUTER_PORT = 8080
# Shared with the simulated cluster's KServe manager (`./scripts/sim-cluster.sh kserve`).
NETNS_SCRIPT = REPO_ROOT / "scripts" / "simcluster" / "netns.py"
BUILD_COMMAND = "bash scripts/build-cluster-tools.sh kserve"


def kserve_router_binary() -> Path:
    """Where scripts/build-cluster-tools.sh puts the router of the pinned KServe version (may not exist yet)."""
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "bin" / f"kserve-{read_versions()['KSERVE_CONTROLLER_VERSION']}" / "router"


def graph_json(spec: Mapping) -> str:
    """The --graph-json argument KServe's controller gives the router: the InferenceGraph's spec as JSON."""
    return json.dumps(spec, separators=(",", ":"))


@contextmanager
def kserve_router(
    binary: Path, spec: Mapping, upstream_ports: Sequence[int], log_dir: Path, *, name: str = "kserve-router"
) -> Iterator[Service]:
    """KServe's router for the graph `spec`, answering on a free 127.0.0.1 port.

    It runs in its own network namespace (scripts/simcluster/netns.py), where `:8080` is a private loopback;
    it can call the host's 127.0.0.1 ports in `upstream_ports` and nothing else.
    """
    port = free_port()
    cmd = [sys.executable, str(NETNS_SCRIPT), "--front-port", str(port), "--inner-port", str(KSERVE_ROUTER_PORT)]
    for upstream in upstream_ports:
        cmd += ["--upstream", str(upstream)]
    log_path = log_dir / f"{name}.log"
    # PROPAGATE_HEADERS is what KServe's controller sets from its default router config
    # ("propagate": []): an empty pattern, which matches, and so forwards, every request header.
    proc = start_process([*cmd, "--", str(binary), "--graph-json", graph_json(spec)], log_path=log_path,
                         env={"PROPAGATE_HEADERS": ""})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/readyz"), timeout=60, what=name, proc=proc, log_path=log_path)
        yield Service(proc, url, log_path)
    finally:
        stop_process(proc)
