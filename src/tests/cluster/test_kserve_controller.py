"""KServe's controller manager, built from github.com/kserve/kserve, reconciling the project's objects in the
simulated cluster: InferenceService -> Deployment, Service, autoscaler and Ingress (Standard mode, from the
chart's inferenceservice-config in namespace kserve), kwok runs the pods, the Deployment becomes Available
and KServe marks the InferenceService Ready, which deploy_model's wait step (the same functions its tasks
call) returns. KServe's admission webhooks run too, registered at https://127.0.0.1:<port> (see
scripts/simcluster/kserve.py): the project's objects pass its validators, and its pod mutator edits the pods.

The manager is started by the user's command, `./scripts/sim-cluster.sh kserve` (the `kserve` fixture), and
./deploy-model.sh is run against it as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tasks.config import Settings
from tasks.deploy import kubernetes as k8s
from tasks.deploy import manifests
from tasks.deploy.deployment import Deployment
from tasks.deploy.versions import read_versions
from tasks.registry import ResolvedVersion
from tests.cluster.conftest import SimCluster
from tests.cluster.fixtures_serving import NAMESPACE, condition, get_json, kserve, managers  # noqa: F401 - fixture
from tests.cluster.kserve_controller import WEBHOOK_KINDS, WEBHOOK_NAME, log_entries, recorded, sim_cluster_sh
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.slow
MODEL = "wachttijden-ctl"
PREDICTOR = f"{MODEL}-predictor"


def custom_objects(cluster: SimCluster):
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(cluster.kubeconfig))


def owned_by(obj: dict, isvc: dict) -> bool:
    return any(ref["uid"] == isvc["metadata"]["uid"] and ref.get("controller") for ref in
               obj["metadata"].get("ownerReferences", []))


@pytest.fixture(scope="module")
def served(kserve, sim_cluster: SimCluster) -> dict:  # noqa: F811 - fixture
    """deploy_model's serve and wait steps (the functions its tasks call) with KServe reconciling."""
    settings = Settings(deploy_target="kubernetes", model_name=MODEL, kserve_namespace=NAMESPACE)
    version = ResolvedVersion(name=MODEL, ref="champion", version="7", run_id="r",
                              download_uri="s3://sluice-sim-models/mlflow/1/models/m-7/artifacts")
    api = custom_objects(sim_cluster)
    deployment = k8s.serve_model(settings, version, api=api)
    # Through XCom's plain-dict form, as the DAG hands it from serve to wait_ready.
    waited = k8s.wait(settings, Deployment.from_dict(deployment.to_dict()), api=api, poll_interval=1)
    return {"waited": waited, "isvc": get_json(sim_cluster, "inferenceservice", MODEL, "-n", NAMESPACE)}


class TestControllerProcess:
    def test_should_run_the_manager_where_only_loopback_exists(self, kserve):  # noqa: F811
        tree = [psutil.Process(kserve.pid), *psutil.Process(kserve.pid).children(recursive=True)]
        manager = next(p for p in tree if p.name() == "manager")
        assert os.readlink(f"/proc/{manager.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        interfaces = [line.split(":")[0].strip()
                      for line in Path(f"/proc/{manager.pid}/net/dev").read_text().splitlines()[2:]]
        assert interfaces == ["lo"]  # its webhook's `:9443` can only mean that loopback

    def test_should_listen_on_the_host_only_on_loopback(self, kserve):  # noqa: F811
        tree = [psutil.Process(kserve.pid), *psutil.Process(kserve.pid).children(recursive=True)]
        host_listeners = {(c.laddr.ip, c.laddr.port) for p in tree for c in p.net_connections("tcp")
                          if c.status == psutil.CONN_LISTEN}
        # Only the relay's front (the webhook's port on the host): the manager's own listeners (webhook,
        # metrics, health) are in its network namespace.
        assert host_listeners == {("127.0.0.1", kserve.webhook_port)}

    def test_should_run_the_pinned_kserve_build_in_standard_mode(self, kserve, sim_cluster):  # noqa: F811
        assert kserve.command[0].endswith(f"/kserve-{read_versions()['KSERVE_CONTROLLER_VERSION']}/manager")
        config = get_json(sim_cluster, "configmap", "inferenceservice-config", "-n", "kserve")
        assert json.loads(config["data"]["deploy"])["defaultDeploymentMode"] == "Standard"
        assert not any(e.get("level") == "error" and "webhook" in e.get("msg", "").lower()
                       for e in log_entries(kserve.log))


class TestInferenceServiceReconciled:
    def test_should_create_an_available_deployment_owned_by_the_service(self, served, sim_cluster):
        deployment = get_json(sim_cluster, "deployment", PREDICTOR, "-n", NAMESPACE)
        assert owned_by(deployment, served["isvc"])
        assert condition(deployment, "Available")["status"] == "True"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        runtime = get_json(sim_cluster, "servingruntime", "sluice-mlflow", "-n", NAMESPACE)
        assert container["image"] == runtime["spec"]["containers"][0]["image"]
        assert container["command"] == ["python", "-m", "serving.model_server"]
        assert MODEL in container["args"]  # the runtime's {{.Name}}, filled in by KServe

    def test_should_create_the_predictor_service_autoscaler_and_ingress(self, served, sim_cluster):
        service = get_json(sim_cluster, "service", PREDICTOR, "-n", NAMESPACE)
        assert owned_by(service, served["isvc"])
        assert service["spec"]["type"] == "ClusterIP"
        hpa = get_json(sim_cluster, "hpa", PREDICTOR, "-n", NAMESPACE)
        assert owned_by(hpa, served["isvc"])
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": PREDICTOR}
        assert hpa["spec"]["minReplicas"] == served["isvc"]["spec"]["predictor"]["minReplicas"]
        ingress = get_json(sim_cluster, "ingress", MODEL, "-n", NAMESPACE)
        assert ingress["spec"]["ingressClassName"] == "istio"
        assert ingress["spec"]["rules"][0]["host"] == f"{MODEL}-{NAMESPACE}.sluice.example.com"

    def test_should_run_the_pods_on_kwok_nodes_with_kserves_pod_mutations(self, served, sim_cluster):
        pods = get_json(sim_cluster, "pods", "-n", NAMESPACE, "-l", f"serving.kserve.io/inferenceservice={MODEL}")
        assert pods["items"]
        for pod in pods["items"]:
            assert pod["status"]["phase"] == "Running"
            assert condition(pod, "Ready")["status"] == "True"
            # The pod mutator (KServe's webhook, through 127.0.0.1) adds the storage initializer.
            init = [c["name"] for c in pod["spec"].get("initContainers", [])]
            assert "storage-initializer" in init
            assert pod["spec"]["nodeName"].startswith("sim-")

    def test_should_mark_the_service_ready_itself(self, served):
        isvc = served["isvc"]
        assert condition(isvc, "Ready")["status"] == "True"
        assert condition(isvc, "PredictorReady")["status"] == "True"
        assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]
        writers = managers(isvc, "status")
        assert writers and "sluice" not in writers

    def test_should_let_the_wait_step_return_the_url_kserve_published(self, served):
        waited = served["waited"]
        assert waited.urls == {MODEL: f"http://{PREDICTOR}.{NAMESPACE}.svc.cluster.local"}
        assert waited.urls[MODEL] == served["isvc"]["status"]["address"]["url"]
        assert waited.entry_path == f"/v2/models/{MODEL}/infer"


class TestWebhooks:
    def test_should_be_registered_by_url_on_loopback_only(self, kserve, sim_cluster):  # noqa: F811
        hooks = get_json(sim_cluster, f"mutatingwebhookconfiguration/{WEBHOOK_NAME}",
                                     f"validatingwebhookconfiguration/{WEBHOOK_NAME}")["items"]
        urls = [w["clientConfig"]["url"] for h in hooks for w in h["webhooks"]]
        assert len(urls) == 5
        assert all(u.startswith(f"https://127.0.0.1:{kserve.webhook_port}/") for u in urls)
        assert not [w for h in hooks for w in h["webhooks"] if "service" in w["clientConfig"]]

    def test_should_reject_an_invalid_service_through_kserves_validator(self, kserve, sim_cluster):  # noqa: F811
        bad = manifests.build_inference_service("wachttijden-bad", NAMESPACE, "s3://b/m/")
        bad["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] = "no-such-autoscaler"
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(bad, api=custom_objects(sim_cluster))
        message = str(err.value)
        # KServe's validators refuse with 403, which is not RBAC: the hint must say who refused.
        assert err.value.status == 403
        assert 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request' in message
        assert "[no-such-autoscaler] is not a supported autoscaler class type" in message
        assert "hint: an admission webhook refused the object" in message and "RBAC" not in message
        assert k8s.get("InferenceService", "wachttijden-bad", NAMESPACE, api=custom_objects(sim_cluster)) is None


class TestSimClusterCommand:
    """`./scripts/sim-cluster.sh kserve` as the user runs it: converges, is listed, stops before the cluster."""

    def test_should_keep_the_manager_and_its_webhooks_when_run_again(self, kserve, sim_cluster):  # noqa: F811
        before = get_json(sim_cluster, WEBHOOK_KINDS)["items"]
        again = sim_cluster_sh(sim_cluster.env, "kserve")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert recorded(sim_cluster.state) == kserve  # same pid, command and port
        after = get_json(sim_cluster, WEBHOOK_KINDS)["items"]
        versions = {(h["kind"], h["metadata"]["name"]): h["metadata"]["resourceVersion"] for h in before}
        assert {(h["kind"], h["metadata"]["name"]): h["metadata"]["resourceVersion"] for h in after} == versions
        assert {("MutatingWebhookConfiguration", WEBHOOK_NAME), ("ValidatingWebhookConfiguration", WEBHOOK_NAME)
                } <= versions.keys()

    def test_should_register_the_webhooks_as_the_sim_field_manager(self, kserve, sim_cluster):  # noqa: F811
        for kind in WEBHOOK_KINDS.split(","):
            hook = get_json(sim_cluster, kind, WEBHOOK_NAME)
            assert managers(hook)["sluice-sim"]["operation"] == "Apply"

    def test_should_list_the_manager_in_status(self, kserve, sim_cluster):  # noqa: F811
        status = sim_cluster_sh(sim_cluster.env, "status")
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith("kserve-controller "))
        assert f"running  pid={kserve.pid}" in line
        assert f"webhooks=https://127.0.0.1:{kserve.webhook_port}" in line

    def test_should_stop_before_the_control_plane_and_log_in_the_run_folder(self, kserve, sim_cluster):  # noqa: F811
        from tasks.deploy import processes

        run = sim_cluster.state / "run"
        control_plane = [processes.load(run, n) for n in processes.names(run) if n != "kserve-controller"]
        assert control_plane and all(kserve.stop_order < s.role.stop_order for s in control_plane)
        assert kserve.log == run / "kserve-controller.log"


# ./deploy-model.sh's defaults: the model's InferenceService, in namespace models.
SCRIPT_MODEL = "wachttijden"
SCRIPT_STORAGE_URI = "s3://sluice-sim-models/mlflow/1/models/m-3/artifacts"


def deploy_model_script(cluster: SimCluster) -> subprocess.CompletedProcess:
    env = {k: v for k, v in cluster.env.items() if k not in ("SLUICE_MODEL_NAME", "SLUICE_KSERVE_NAMESPACE")}
    return subprocess.run(["./deploy-model.sh", "--storage-uri", SCRIPT_STORAGE_URI, "--env", "dev"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900, check=False)


def settled(cluster: SimCluster, *args: str, quiet_s: float = 3, timeout: float = 60) -> dict:
    """The object once its resourceVersion has not moved for `quiet_s` (KServe's last status writes done)."""
    obj = get_json(cluster, *args)
    quiet_since, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.5)
        latest = get_json(cluster, *args)
        if latest["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            obj, quiet_since = latest, time.monotonic()
    return obj


@pytest.fixture(scope="module")
def script_runs(kserve, sim_cluster: SimCluster) -> dict:  # noqa: F811 - fixture
    """./deploy-model.sh --storage-uri twice against the cluster with KServe's manager running."""
    # The InferenceService runs as ServiceAccount sluice-models (deploy-model.sh's default; on a real
    # cluster it carries the storage credentials): deploy-cluster.sh created it (deploy/base/models-namespace).
    sim_cluster.kubectl("get", "serviceaccount", "sluice-models", "-n", NAMESPACE)
    first = deploy_model_script(sim_cluster)
    assert first.returncode == 0, f"first ./deploy-model.sh failed:\n{first.stderr[-6000:]}"
    before = settled(sim_cluster, "inferenceservice", SCRIPT_MODEL, "-n", NAMESPACE)
    second = deploy_model_script(sim_cluster)
    after = get_json(sim_cluster, "inferenceservice", SCRIPT_MODEL, "-n", NAMESPACE)
    return {"runs": (first, second), "before": before, "after": after}


class TestDeployModelScript:
    def test_should_succeed_twice_and_wait_for_ready(self, script_runs):
        for run in script_runs["runs"]:
            assert run.returncode == 0, run.stderr[-6000:]
            assert f"InferenceService {NAMESPACE}/{SCRIPT_MODEL} is Ready at" in run.stderr

    def test_should_change_nothing_the_second_time(self, script_runs):
        before, after = script_runs["before"], script_runs["after"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["predictor"]["model"]["storageUri"] == SCRIPT_STORAGE_URI + "/"  # a folder

    def test_should_see_ready_written_by_kserves_controller(self, script_runs):
        isvc = script_runs["after"]
        assert condition(isvc, "Ready")["status"] == "True"
        assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]
        assert managers(isvc)["sluice"]["operation"] == "Apply"  # the script's apply
        status_writers = set(managers(isvc, "status"))
        assert status_writers and "sluice" not in status_writers
        assert "manager" in status_writers  # KServe's controller manager (its client's default field manager)


def test_should_have_connected_to_nothing_outside_loopback(sim_cluster, served, script_runs, kserve):  # noqa: F811
    # The session's watch covers this process and its children (the relays, the manager) and the control
    # plane; the manager's own sockets live in its namespace, where nothing but loopback is routable.
    sim_cluster.watch.sample()
    assert sorted(sim_cluster.watch.violations) == []
