"""Fixtures of the serving tests on the simulated cluster: KServe's controller, the Airflow worker's own
credentials, registered model versions, and how to read who wrote what (managedFields).

Import the fixtures into a test module by name (`from tests.cluster.fixtures_serving import kserve`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tasks.deploy import processes
from tests.cluster.conftest import SimCluster
from tests.cluster.kserve_controller import WEBHOOK_KINDS, WEBHOOK_NAME, KServeController, recorded, sim_cluster_sh

NAMESPACE = "models"
# An artifact store the cluster would read models from; nothing connects to it (no container runs).
ARTIFACT_ROOT = "s3://sluice-sim-models/mlflow"
KSERVE_KINDS = "servingruntimes.serving.kserve.io,inferenceservices.serving.kserve.io,inferencegraphs.serving.kserve.io"
ISTIO_KINDS = "gateways.networking.istio.io,virtualservices.networking.istio.io"


# Imported by name into several test modules, the fixture gets one definition per module: the first to run
# starts the manager (per simulated cluster) and stops it at the end of the session, the others reuse it.
_RUNNING: dict[Path, KServeController] = {}


@pytest.fixture(scope="session")
def kserve(sim_cluster: SimCluster, deployed_cluster: dict) -> Iterator[KServeController]:
    """KServe's controller manager reconciling the cluster from here to the end of the session, started and
    stopped by the user's commands `./scripts/sim-cluster.sh kserve` and `kserve --stop`."""
    if sim_cluster.state in _RUNNING:
        yield _RUNNING[sim_cluster.state]
        return
    started = sim_cluster_sh(sim_cluster.env, "kserve")
    assert started.returncode == 0, f"sim-cluster.sh kserve failed:\n{started.stderr[-6000:]}"
    controller = recorded(sim_cluster.state)
    assert controller is not None, started.stderr
    _RUNNING[sim_cluster.state] = controller
    try:
        yield controller
    finally:
        del _RUNNING[sim_cluster.state]
    stopped = sim_cluster_sh(sim_cluster.env, "kserve", "--stop")
    assert stopped.returncode == 0, f"sim-cluster.sh kserve --stop failed:\n{stopped.stderr}"
    # The registrations go first, then the process (its whole group: relays and manager).
    left = sim_cluster.kubectl("get", WEBHOOK_KINDS, "-o", "name").stdout.split()
    assert [name for name in left if name.endswith(f"/{WEBHOOK_NAME}")] == []
    assert recorded(sim_cluster.state) is None
    assert not processes.alive(controller.pid)


def token_kubeconfig(cluster: SimCluster, account: str, namespace: str, folder: Path) -> Path:
    """A kubeconfig holding a token of a service account (what its pod has), so calls made with it get
    exactly the rights the charts and deploy/base give that account."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [server],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": server["name"], "user": account}}],
    }
    path = folder / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def worker_kubeconfig(sim_cluster: SimCluster, deployed_cluster: dict, tmp_path_factory: pytest.TempPathFactory
                      ) -> Path:
    """The Airflow worker's credentials (service account airflow-worker), as a deploy task pod has them."""
    return token_kubeconfig(sim_cluster, "airflow-worker", "airflow", tmp_path_factory.mktemp("worker"))


def register_versions(tracking_uri: str, model_name: str, aliases: tuple[str, ...]) -> dict[str, str]:
    """One registered version per alias, each a run's logged model folder; alias -> version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"{model_name}-{uuid.uuid4().hex[:8]}")
    client.create_registered_model(model_name)
    versions = {}
    for alias in aliases:
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(model_name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(model_name, alias, version.version)
        versions[alias] = str(version.version)
    return versions


def get_json(cluster: SimCluster, *args: str) -> dict:
    """`kubectl get -o json` with managedFields (kubectl leaves them out unless asked)."""
    return json.loads(cluster.kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)


def managers(obj: dict, subresource: str = "") -> dict[str, dict]:
    """Field manager -> its managedFields entry (of the main resource, or of a subresource such as status)."""
    return {m["manager"]: m for m in obj["metadata"].get("managedFields", [])
            if m.get("subresource", "") == subresource}


def owns(entry: dict, *path: str) -> bool:
    """True when a managedFields entry owns the field at `path` (keys as in fieldsV1, e.g. "f:spec")."""
    node = entry.get("fieldsV1", {})
    for key in path:
        if key not in node:
            return False
        node = node[key]
    return True


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)
