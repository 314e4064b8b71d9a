"""The xray image model's InferenceService, from the same builders and ServingRuntime as the tabular one, applied
by deploy_xray's serve and wait steps to the simulated cluster's real API server, reconciled by KServe's own
controller (and admitted by its webhooks) until KServe marks it Ready (see test_kserve_controller.py)."""

from __future__ import annotations

import time

import pytest

from tasks.config import Settings
from tasks.deploy import kubernetes as k8s
from tasks.deploy.deployment import Deployment
from tasks.deploy.use_cases import IMAGE, settings_for
from tasks.registry import ResolvedVersion
from tests.cluster.conftest import SimCluster
from tests.cluster.fixtures_serving import NAMESPACE, condition, get_json, kserve, managers  # noqa: F401 - fixture
from tests.cluster.test_kserve_controller import custom_objects, owned_by

pytestmark = pytest.mark.slow
XRAY = "xray-ctl"
PREDICTOR = f"{XRAY}-predictor"
# The case must stay cheap beside the tabular ones: apply, reconcile and Ready within this.
BUDGET_S = 60


@pytest.fixture(scope="module")
def served_xray(kserve, sim_cluster: SimCluster) -> dict:  # noqa: F811 - fixture
    settings = settings_for(
        Settings(deploy_target="kubernetes", xray_model_name=XRAY, kserve_namespace=NAMESPACE), IMAGE
    )
    version = ResolvedVersion(name=XRAY, ref="champion", version="2", run_id="r",
                              download_uri="s3://sluice-sim-models/mlflow/2/models/m-xray-2/artifacts")
    api = custom_objects(sim_cluster)
    start = time.monotonic()
    deployment = k8s.serve_model(settings, version, api=api, use_case=IMAGE)
    # Through XCom's plain-dict form, as the DAG hands it from serve to wait_ready.
    waited = k8s.wait(settings, Deployment.from_dict(deployment.to_dict()), api=api, poll_interval=1,
                      timeout=BUDGET_S)
    return {"waited": waited, "seconds": time.monotonic() - start,
            "isvc": get_json(sim_cluster, "inferenceservice", XRAY, "-n", NAMESPACE)}


def test_should_be_ready_as_kserve_says_within_the_budget(served_xray):
    isvc = served_xray["isvc"]
    assert condition(isvc, "Ready")["status"] == "True"
    assert "sluice" not in managers(isvc, "status")  # Ready written by KServe's controller
    assert managers(isvc)["sluice"]["operation"] == "Apply"
    assert served_xray["seconds"] < BUDGET_S
    waited = served_xray["waited"]
    assert waited.use_case == IMAGE and waited.entry_path == f"/v2/models/{XRAY}/infer"
    assert waited.urls == {XRAY: f"http://{PREDICTOR}.{NAMESPACE}.svc.cluster.local"}


def test_should_run_the_one_project_runtime_for_the_image_model(served_xray, sim_cluster):
    isvc = served_xray["isvc"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == "sluice-mlflow" and model["modelFormat"] == {"name": "mlflow"}
    assert model["storageUri"] == "s3://sluice-sim-models/mlflow/2/models/m-xray-2/artifacts/"
    assert "nvidia.com/gpu" not in model["resources"].get("limits", {})  # serving needs no GPU
    assert isvc["metadata"]["labels"]["sluice.io/model-name"] == XRAY
    deployment = get_json(sim_cluster, "deployment", PREDICTOR, "-n", NAMESPACE)
    assert owned_by(deployment, isvc) and condition(deployment, "Available")["status"] == "True"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    runtime = get_json(sim_cluster, "servingruntime", "sluice-mlflow", "-n", NAMESPACE)
    assert container["image"] == runtime["spec"]["containers"][0]["image"]
    # The same command as the tabular model: the server picks the image server from the model itself.
    assert container["command"] == ["python", "-m", "serving.model_server"]
    assert XRAY in container["args"] and "--use-case" not in container["args"]


def test_should_have_connected_to_nothing_outside_loopback(sim_cluster, served_xray):
    sim_cluster.watch.sample()
    assert sorted(sim_cluster.watch.violations) == []
