"""deploy_model and deploy_traffic_mirroring with deploy_target=kubernetes, run by `dag.test()` against the
simulated cluster deployed by ./deploy-cluster.sh, with KServe's own controller and webhooks running.

The tasks run in this process as the Airflow worker's service account (a token of `airflow-worker`, so
the chart's and deploy/base/airflow's RBAC is what allows or refuses each call) and resolve the versions
in a real MLflow server. Readiness comes from KServe's controller: nothing here writes a status.

Not run: `smoke_test`. It POSTs to the in-cluster URLs (`*.svc.cluster.local`), which no container
serves here and which would need a DNS server outside 127.0.0.0/8; dag.test marks it successful
unrun (`mark_success_pattern`) and the tests check what the wait step handed it instead.
"""

from __future__ import annotations

import json

# Imported before the tests set KUBECONFIG, as in a long-running worker process: the tasks must use the
# KUBECONFIG of when they run (the client's default location is fixed when it is first imported).
import kubernetes.config  # noqa: F401
import pytest

from tests.cluster.conftest import SimCluster
from tests.cluster.fixtures_serving import (  # noqa: F401 - fixtures
    ISTIO_KINDS,
    KSERVE_KINDS,
    NAMESPACE,
    condition,
    get_json,
    kserve,
    managers,
    owns,
    register_versions,
    worker_kubeconfig,
)
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.slow
MODEL = "wachttijden-sim"
SMOKE = "smoke_test"


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    assert not {k: v for k, v in bag.import_errors.items() if "deploy_" in k}
    return bag.dags[dag_id]


@pytest.fixture(scope="module")
def platform(airflow_db, mlflow_server, worker_kubeconfig, kserve):  # noqa: F811 - fixtures
    """Airflow Variables (as AIRFLOW_VAR_*) for the cluster target and two registered versions."""
    from tests.conftest import isolate_mlflow_client, reset_mlflow_client

    versions = register_versions(mlflow_server, MODEL, ("champion", "challenger"))
    env = {
        "AIRFLOW_VAR_DEPLOY_TARGET": "kubernetes",
        "AIRFLOW_VAR_MODEL_NAME": MODEL,
        "AIRFLOW_VAR_KSERVE_NAMESPACE": NAMESPACE,
        "AIRFLOW_VAR_MLFLOW_TRACKING_URI": mlflow_server,
        "AIRFLOW_VAR_MLFLOW_ARTIFACTS_DESTINATION": "s3://sluice-sim-models/mlflow",
        "KUBECONFIG": str(worker_kubeconfig),
    }
    with pytest.MonkeyPatch.context() as mp:
        isolate_mlflow_client(mp, mlflow_server)
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield versions
        finally:
            reset_mlflow_client()


def run_dag(dag_id: str, **conf) -> dict:
    """One dag.test() run; task id -> state, and what wait_ready handed the smoke test (XCom) under "handed"."""
    run = load_dag(dag_id).test(run_conf=conf or None, mark_success_pattern=SMOKE)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    return {**states, "handed": run.get_task_instance("wait_ready").xcom_pull(task_ids="wait_ready")}


def ours(cluster: SimCluster) -> dict[tuple[str, str], dict]:
    """(kind, name) -> object of every KServe and Istio object in the models namespace."""
    items = get_json(cluster, f"{KSERVE_KINDS},{ISTIO_KINDS}", "-n", NAMESPACE)["items"]
    return {(o["kind"], o["metadata"]["name"]): o for o in items if o["metadata"]["name"].startswith(
        (MODEL, "sluice-"))}


def fingerprint(obj: dict) -> dict:
    """What a deploy may change: the spec, the generation and the sluice apply (its fields and its time)."""
    sluice = managers(obj)["sluice"]
    return {"spec": obj["spec"], "generation": obj["metadata"]["generation"],
            "sluice": (sluice["operation"], sluice["time"], json.dumps(sluice["fieldsV1"], sort_keys=True))}


@pytest.fixture(scope="module")
def model_runs(platform, sim_cluster):
    """deploy_model twice with nothing changed in between, the objects after each run."""
    first = run_dag("deploy_model")
    after_first = ours(sim_cluster)
    deployment_first = get_json(sim_cluster, "deployment", f"{MODEL}-predictor", "-n", NAMESPACE)
    second = run_dag("deploy_model")
    deployment_second = get_json(sim_cluster, "deployment", f"{MODEL}-predictor", "-n", NAMESPACE)
    return {"states": (first, second), "first": after_first, "second": ours(sim_cluster),
            "deployment": (deployment_first, deployment_second)}


class TestDeployModel:
    def test_should_run_resolve_serve_and_wait_for_real(self, model_runs):
        for states in model_runs["states"]:
            assert {k: v for k, v in states.items() if k != "handed"} == {
                "resolve": "success", "serve": "success", "wait_ready": "success", SMOKE: "success"}

    def test_should_hand_the_smoke_test_the_in_cluster_url_kserve_published(self, model_runs):
        isvc = model_runs["first"][("InferenceService", MODEL)]
        handed = model_runs["states"][0]["handed"]
        assert handed["urls"] == {MODEL: isvc["status"]["address"]["url"]}
        assert (handed["entry"], handed["entry_path"]) == (MODEL, f"/v2/models/{MODEL}/infer")

    def test_should_apply_the_runtime_and_the_service_as_the_sluice_field_manager(self, model_runs, platform):
        objects = model_runs["first"]
        assert {("ServingRuntime", "sluice-mlflow"), ("InferenceService", MODEL)} <= objects.keys()
        for key in (("ServingRuntime", "sluice-mlflow"), ("InferenceService", MODEL)):
            sluice = managers(objects[key])["sluice"]
            assert sluice["operation"] == "Apply", key
            assert owns(sluice, "f:spec"), key
        isvc = objects[("InferenceService", MODEL)]
        assert isvc["metadata"]["labels"]["sluice.io/model-version"] == platform["champion"]
        assert isvc["spec"]["predictor"]["model"]["storageUri"].startswith("s3://sluice-sim-models/mlflow/")

    def test_should_see_ready_written_by_kserve_not_by_the_pipeline(self, model_runs):
        isvc = model_runs["first"][("InferenceService", MODEL)]
        assert condition(isvc, "Ready")["status"] == "True"
        assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]
        status_writers = set(managers(isvc, "status"))
        assert status_writers and "sluice" not in status_writers
        assert isvc["status"]["address"]["url"] == f"http://{MODEL}-predictor.{NAMESPACE}.svc.cluster.local"

    def test_should_change_nothing_when_run_again(self, model_runs):
        first, second = model_runs["first"], model_runs["second"]
        assert first.keys() == second.keys()
        assert {k: fingerprint(v) for k, v in second.items()} == {k: fingerprint(v) for k, v in first.items()}
        runtime = ("ServingRuntime", "sluice-mlflow")  # nothing but the pipeline writes it
        assert second[runtime]["metadata"]["resourceVersion"] == first[runtime]["metadata"]["resourceVersion"]
        before, after = model_runs["deployment"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]  # no rollout either

    def test_should_take_back_a_field_another_manager_changed(self, model_runs, sim_cluster):
        patch = {"spec": {"predictor": {"minReplicas": 3}}}
        sim_cluster.kubectl("patch", "inferenceservice", MODEL, "-n", NAMESPACE, "--type=merge",
                            "--field-manager=hand-edit", "-p", json.dumps(patch))
        edited = get_json(sim_cluster, "inferenceservice", MODEL, "-n", NAMESPACE)
        assert owns(managers(edited)["hand-edit"], "f:spec", "f:predictor", "f:minReplicas")

        assert run_dag("deploy_model")["wait_ready"] == "success"

        isvc = get_json(sim_cluster, "inferenceservice", MODEL, "-n", NAMESPACE)
        assert isvc["spec"]["predictor"]["minReplicas"] == 1
        owners = managers(isvc)
        assert owns(owners["sluice"], "f:spec", "f:predictor", "f:minReplicas")
        assert "hand-edit" not in owners or not owns(owners["hand-edit"], "f:spec", "f:predictor", "f:minReplicas")
        # The wait step waited for KServe to reconcile the spec it took back, not for a stale Ready.
        assert isvc["metadata"]["generation"] == edited["metadata"]["generation"] + 1
        assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]


@pytest.fixture(scope="module")
def mirror_runs(platform, sim_cluster):
    first = run_dag("deploy_traffic_mirroring")
    after_first = ours(sim_cluster)
    second = run_dag("deploy_traffic_mirroring")
    return {"states": (first, second), "first": after_first, "second": ours(sim_cluster)}


class TestDeployTrafficMirroring:
    EXPECTED = {("ServingRuntime", "sluice-mlflow"), ("InferenceService", MODEL),
                ("InferenceService", f"{MODEL}-challenger"), ("InferenceGraph", f"{MODEL}-mirror"),
                ("Gateway", "sluice-models-gateway"), ("VirtualService", f"{MODEL}-shadow")}

    def test_should_run_every_step_but_the_smoke_test_for_real(self, mirror_runs):
        for states in mirror_runs["states"]:
            assert {k: v for k, v in states.items() if k != "handed"} == {
                "resolve_champion": "success", "resolve_challenger": "success", "serve": "success",
                "wait_ready": "success", SMOKE: "success"}

    def test_should_apply_services_graph_gateway_and_mirror_as_sluice(self, mirror_runs, platform):
        objects = mirror_runs["first"]
        assert self.EXPECTED <= objects.keys()
        for key in self.EXPECTED:
            assert managers(objects[key])["sluice"]["operation"] == "Apply", key
        challenger = objects[("InferenceService", f"{MODEL}-challenger")]
        assert challenger["metadata"]["labels"]["sluice.io/model-version"] == platform["challenger"]
        vs = objects[("VirtualService", f"{MODEL}-shadow")]
        assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 100.0}

    def test_should_get_the_graph_ready_from_kserve(self, mirror_runs, sim_cluster):
        graph = mirror_runs["first"][("InferenceGraph", f"{MODEL}-mirror")]
        assert condition(graph, "Ready")["status"] == "True"
        assert "sluice" not in managers(graph, "status")
        router = get_json(sim_cluster, "deployment", f"{MODEL}-mirror", "-n", NAMESPACE)
        assert condition(router, "Available")["status"] == "True"
        assert get_json(sim_cluster, "service", f"{MODEL}-mirror", "-n", NAMESPACE)["spec"]["ports"][0]["port"] == 80

    def test_should_hand_the_smoke_test_the_graphs_in_cluster_service(self, mirror_runs):
        # KServe publishes only the graph's external host (<graph>-<namespace>.<domain>), which no Ingress
        # routes and no pod resolves: the smoke test must call the router's Service instead.
        graph = mirror_runs["first"][("InferenceGraph", f"{MODEL}-mirror")]
        assert graph["status"]["url"] == f"http://{MODEL}-mirror-{NAMESPACE}.sluice.example.com"
        handed = mirror_runs["states"][0]["handed"]
        assert handed["urls"] == {
            MODEL: f"http://{MODEL}-predictor.{NAMESPACE}.svc.cluster.local",
            f"{MODEL}-challenger": f"http://{MODEL}-challenger-predictor.{NAMESPACE}.svc.cluster.local",
            f"{MODEL}-mirror": f"http://{MODEL}-mirror.{NAMESPACE}.svc.cluster.local",
        }
        assert (handed["entry"], handed["entry_path"], handed["challenger"]) == (
            f"{MODEL}-mirror", "", f"{MODEL}-challenger")

    def test_should_change_nothing_when_run_again(self, mirror_runs):
        first, second = mirror_runs["first"], mirror_runs["second"]
        assert {k: fingerprint(second[k]) for k in self.EXPECTED} == {k: fingerprint(first[k]) for k in self.EXPECTED}
        for key in (("Gateway", "sluice-models-gateway"), ("VirtualService", f"{MODEL}-shadow")):
            assert second[key]["metadata"]["resourceVersion"] == first[key]["metadata"]["resourceVersion"]

    def test_should_take_back_the_mirrored_share_another_manager_applied(self, mirror_runs, sim_cluster):
        name = f"{MODEL}-shadow"
        vs = get_json(sim_cluster, "virtualservice", name, "-n", NAMESPACE)
        http = [{**vs["spec"]["http"][0], "mirrorPercentage": {"value": 5.0}}]
        intruder = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"http": http}}
        sim_cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=hand-edit", "-f", "-",
                            stdin=json.dumps(intruder))
        assert get_json(sim_cluster, "virtualservice", name, "-n", NAMESPACE)["spec"]["http"][0][
            "mirrorPercentage"] == {"value": 5.0}

        assert run_dag("deploy_traffic_mirroring")["wait_ready"] == "success"

        vs = get_json(sim_cluster, "virtualservice", name, "-n", NAMESPACE)
        assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 100.0}
        assert owns(managers(vs)["sluice"], "f:spec", "f:http")

    def test_should_update_the_share_in_place_from_the_param(self, mirror_runs, sim_cluster):
        before = get_json(sim_cluster, "virtualservice", f"{MODEL}-shadow", "-n", NAMESPACE)
        assert run_dag("deploy_traffic_mirroring", mirror_percent=25)["wait_ready"] == "success"
        after = get_json(sim_cluster, "virtualservice", f"{MODEL}-shadow", "-n", NAMESPACE)
        assert after["spec"]["http"][0]["mirrorPercentage"] == {"value": 25.0}
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


def test_should_have_connected_to_nothing_outside_loopback(sim_cluster, model_runs, mirror_runs):
    # The tasks ran in this process (MLflow and the API server on 127.0.0.1); the smoke test, which
    # would resolve *.svc.cluster.local through a DNS server outside 127.0.0.0/8, was not run.
    sim_cluster.watch.sample()
    assert sorted(sim_cluster.watch.violations) == []
