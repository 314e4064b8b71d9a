"""./deploy-cluster.sh --env dev against the simulated cluster, twice: the real helm, kubectl and waits.

What runs for real: the API server (CRD schemas, RBAC, admission), the controllers (Deployments,
ReplicaSets, Jobs), the scheduler and Helm. kwok plays the kubelets: pods become Ready, Job pods
succeed, claims bind. No container runs, so nothing inside the charts' pods is exercised.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.cluster.conftest import SimCluster

RELEASES = {
    ("istio-system", "istio-base"), ("istio-system", "istiod"), ("istio-system", "istio-ingressgateway"),
    ("cert-manager", "cert-manager"), ("kserve", "kserve-crd"), ("kserve", "kserve"),
    ("elastic-system", "elastic-operator"), ("mlflow", "mlflow"), ("airflow", "airflow"),
}
class TestDeployCluster:
    def test_should_leave_every_helm_release_deployed(self, sim_cluster, deployed_cluster):
        releases = json.loads(subprocess.run(
            ["helm", "list", "--all-namespaces", "-o", "json"], env=sim_cluster.env,
            capture_output=True, text=True, check=True).stdout)
        assert {(r["namespace"], r["name"]) for r in releases} == RELEASES
        assert {r["name"]: r["status"] for r in releases} == {name: "deployed" for _, name in RELEASES}

    def test_should_establish_every_crd(self, sim_cluster, deployed_cluster):
        crds = sim_cluster.get_json("crd")["items"]
        names = {c["metadata"]["name"] for c in crds}
        assert {"inferenceservices.serving.kserve.io", "virtualservices.networking.istio.io",
                "elasticsearches.elasticsearch.k8s.elastic.co", "certificates.cert-manager.io"} <= names
        not_established = [
            c["metadata"]["name"] for c in crds
            if not any(x["type"] == "Established" and x["status"] == "True" for x in c["status"].get("conditions", []))
        ]
        assert not_established == []

    def test_should_make_every_deployment_available(self, sim_cluster, deployed_cluster):
        deployments = sim_cluster.get_json("deployments", "--all-namespaces")["items"]
        namespaces = {d["metadata"]["namespace"] for d in deployments}
        assert {"istio-system", "cert-manager", "kserve", "mlflow", "airflow"} <= namespaces
        unavailable = [
            f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in deployments
            if not any(c["type"] == "Available" and c["status"] == "True" for c in d["status"].get("conditions", []))
        ]
        assert unavailable == []

    def test_should_complete_the_airflow_migration_job(self, sim_cluster, deployed_cluster):
        jobs = sim_cluster.get_json("jobs", "-n", "airflow")["items"]
        migrations = [j for j in jobs if "migrat" in j["metadata"]["name"]]
        assert migrations, [j["metadata"]["name"] for j in jobs]
        assert all(j["status"].get("succeeded") == 1 for j in migrations)

    def test_should_change_no_object_when_run_again(self, deployed_cluster):
        before, after = deployed_cluster["before"], deployed_cluster["after"]
        changed = sorted(f"{k[0]} {k[1]}/{k[2]}" for k in before.keys() & after.keys() if before[k] != after[k])
        assert changed == []
        assert sorted(map(str, after.keys() - before.keys())) == []

    def test_should_register_no_webhook_or_apiservice_backed_by_a_service(self, sim_cluster, deployed_cluster):
        hooks = sim_cluster.get_json("validatingwebhookconfigurations,mutatingwebhookconfigurations")["items"]
        via_service = [h["metadata"]["name"] for h in hooks
                       if any("service" in w.get("clientConfig", {}) for w in h.get("webhooks") or [])]
        assert via_service == []
        apiservices = sim_cluster.get_json("apiservices")["items"]
        assert [a["metadata"]["name"] for a in apiservices if a["spec"].get("service")] == []
        crds = sim_cluster.get_json("crd")["items"]
        assert [c["metadata"]["name"] for c in crds
                if (c["spec"].get("conversion") or {}).get("strategy") == "Webhook"] == []

    def test_should_never_print_a_secret(self, deployed_cluster):
        output = "".join(deployed_cluster[run].stdout + deployed_cluster[run].stderr for run in ("first", "second"))
        assert "AccountKey=" not in output
        assert "BEGIN" not in output  # no key material

    def test_should_connect_to_nothing_outside_loopback(self, sim_cluster, deployed_cluster):
        sim_cluster.watch.sample()
        assert sim_cluster.watch.samples > 10, "the connection watch did not run"
        assert sorted(sim_cluster.watch.violations) == []


class TestWorkerRbac:
    """The Airflow worker's service account, checked by the API server's real RBAC authorizer."""

    WORKER = "system:serviceaccount:airflow:airflow-worker"

    def can(self, cluster: SimCluster, verb: str, resource: str, *where: str) -> bool:
        result = cluster.kubectl("auth", "can-i", verb, resource, f"--as={self.WORKER}", *where, check=False)
        assert result.stdout.strip() in {"yes", "no"}, result.stderr
        return result.stdout.strip() == "yes"

    @pytest.mark.parametrize("resource", [
        "inferenceservices.serving.kserve.io", "inferencegraphs.serving.kserve.io",
        "servingruntimes.serving.kserve.io", "virtualservices.networking.istio.io"])
    @pytest.mark.parametrize("verb", ["create", "patch", "get"])
    def test_should_manage_serving_objects_in_the_models_namespace(self, sim_cluster, deployed_cluster, verb, resource):
        assert self.can(sim_cluster, verb, resource, "-n", "models")

    @pytest.mark.parametrize("resource", ["inferenceservices.serving.kserve.io", "virtualservices.networking.istio.io"])
    def test_should_not_manage_them_in_another_namespace(self, sim_cluster, deployed_cluster, resource):
        assert not self.can(sim_cluster, "create", resource, "-n", "default")
        assert not self.can(sim_cluster, "patch", resource, "-n", "kserve")

    def test_should_not_list_secrets_cluster_wide(self, sim_cluster, deployed_cluster):
        assert not self.can(sim_cluster, "list", "secrets", "--all-namespaces")
