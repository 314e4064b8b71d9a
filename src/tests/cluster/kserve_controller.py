"""KServe's controller manager in the simulated cluster as the tests drive it: through the user's own
command, `./scripts/sim-cluster.sh kserve` (and `kserve --stop`), with the session's environment (its
SLUICE_SIM_DIR and KUBECONFIG). What runs is read back from the cluster's run folder, where
tasks.deploy.processes records it. The pieces (certificates, command line, webhook configurations,
readiness) live in scripts/simcluster/kserve.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.deploy import processes
from tests.support.processes import REPO_ROOT

if str(REPO_ROOT / "scripts") not in sys.path:  # scripts/sim_cluster.py does the same for src/
    sys.path.append(str(REPO_ROOT / "scripts"))

from simcluster.kserve import (  # noqa: E402 - after the path setup above
    SERVICE,
    WEBHOOK_KINDS,
    WEBHOOK_NAME,
    log_entries,
    manager_part,
)

__all__ = ["SERVICE", "WEBHOOK_KINDS", "WEBHOOK_NAME", "KServeController", "log_entries", "recorded",
           "sim_cluster_sh"]
SIM_CLUSTER_SH = REPO_ROOT / "scripts" / "sim-cluster.sh"


@dataclass(frozen=True)
class KServeController:
    pid: int  # the recorded service: the process group leader above the relays and the manager
    log: Path  # <run dir>/kserve-controller.log
    command: list[str]  # the manager's own command line
    webhook_port: int  # the relay's host side: https://127.0.0.1:<port>
    stop_order: int


def sim_cluster_sh(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`./scripts/sim-cluster.sh ARGS` from the repository root, as a user runs it."""
    return subprocess.run([str(SIM_CLUSTER_SH), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def recorded(state: Path) -> KServeController | None:
    """The manager `kserve` recorded in the simulated cluster's state folder, if it runs."""
    service = processes.running(state / "run", SERVICE)
    if service is None:
        return None
    port = json.loads((state / "ports.json").read_text())["kserve_webhook"]
    return KServeController(pid=service.pid, log=Path(service.log), command=manager_part(service.cmd),
                            webhook_port=port, stop_order=service.role.stop_order)
