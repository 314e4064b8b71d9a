"""A real Kubernetes control plane for the cluster-layer tests: `scripts/sim_cluster.py up` in a throw-away
state folder, once per session, stopped (by PID) and deleted at the end.

The binaries are built from Go modules by `scripts/setup.sh cluster`, which the test command runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.deploying import deploy_cluster, environment_secrets, resource_versions
from tests.support.netwatch import ConnectionWatch
from tests.support.processes import REPO_ROOT

SIM = REPO_ROOT / "scripts" / "sim_cluster.py"


@dataclass
class SimCluster:
    state: Path
    env: dict[str, str]  # os.environ plus KUBECONFIG, PATH, SLUICE_CHARTS_DIR of this cluster
    watch: ConnectionWatch

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["kubectl", *args], env=self.env, capture_output=True, text=True, input=stdin, timeout=300, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def service_pids(self) -> list[int]:
        pids = []
        for state_file in (self.state / "run").glob("*.json"):
            pids.append(json.loads(state_file.read_text())["pid"])
        return pids


def _exports(stdout: str) -> dict[str, str]:
    env = {}
    for line in stdout.splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    state = tmp_path_factory.mktemp("sim-cluster")
    base = {**os.environ, "SLUICE_SIM_DIR": str(state)}
    up = subprocess.run([sys.executable, str(SIM), "up"], env=base, capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        subprocess.run([sys.executable, str(SIM), "down"], env=base, capture_output=True, timeout=120)
        pytest.fail(f"sim-cluster up failed (build the tools with scripts/setup.sh cluster):\n{up.stderr}")
    env = {**base, **_exports(up.stdout)}
    cluster = SimCluster(state=state, env=env, watch=None)  # type: ignore[arg-type]
    # Everything this test process starts (helm, kubectl, tasks) and every control-plane process.
    cluster.watch = ConnectionWatch(lambda: [os.getpid(), *cluster.service_pids()])
    with cluster.watch:
        yield cluster
    down = subprocess.run([sys.executable, str(SIM), "down", "--purge"], env=base, capture_output=True, text=True,
                          timeout=180)
    assert down.returncode == 0, down.stderr


def snapshot(cluster: SimCluster) -> dict[tuple[str, str, str], str]:
    kinds = cluster.kubectl("api-resources", "--verbs=list,get", "-o", "name").stdout.split()
    return resource_versions(cluster.get_json(",".join(kinds), "--all-namespaces"))


@pytest.fixture(scope="session")
def deployed_cluster(sim_cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """./deploy-cluster.sh --env dev run twice, with the objects' resourceVersions after each run."""
    secrets_dir = tmp_path_factory.mktemp("no-secret-files")  # only the environment's secrets count
    env = {**sim_cluster.env, **environment_secrets()}  # the same secrets for both runs
    first = deploy_cluster(env, secrets_dir)
    assert first.returncode == 0, f"first deploy failed:\n{first.stderr[-6000:]}"
    before = snapshot(sim_cluster)
    second = deploy_cluster(env, secrets_dir)
    assert second.returncode == 0, f"second deploy failed:\n{second.stderr[-6000:]}"
    return {"first": first, "second": second, "before": before, "after": snapshot(sim_cluster)}
