"""The apply layer (tasks.deploy.kubernetes) against the simulated cluster's real API server, with the CRDs
./deploy-cluster.sh installed: server-side apply, field ownership, the API server's own error answers,
and the waits.

No controller runs during this module (KServe's is started only by the modules that need it), so the
statuses here are WRITTEN BY THE TESTS through the status subresource, as KServe would write them:
the waits are checked against a real server's objects, not against KServe's behaviour (that is
test_kserve_controller.py and test_deploy_dags_cluster.py). What only a fake can do stays in
src/tests/tasks/test_deploy_kubernetes.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from tasks.deploy import kubernetes as k8s
from tasks.deploy import manifests as kb
from tests.cluster.conftest import SimCluster
from tests.cluster.fixtures_serving import (  # noqa: F401 - fixture
    condition,
    get_json,
    managers,
    owns,
    worker_kubeconfig,
)

pytestmark = pytest.mark.slow

NOT_READY = {
    "observedGeneration": 1,
    "conditions": [
        {"type": "PredictorReady", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": "Deployment wachttijden-predictor exceeded its progress deadline"},
        {"type": "Ready", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "predictor not ready"},
    ],
}


def ready(generation: int = 1, url: str = "http://wachttijden-predictor.apply.svc.cluster.local") -> dict:
    return {"observedGeneration": generation, "address": {"url": url},
            "conditions": [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}]}


class Clock:
    """time.monotonic/time.sleep stand-ins for wait_ready: sleeping advances the clock and runs `on_sleep`."""

    def __init__(self, on_sleep=lambda: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


@pytest.fixture(scope="module")
def namespace(sim_cluster: SimCluster, deployed_cluster: dict) -> Iterator[str]:
    name = f"apply-{uuid.uuid4().hex[:6]}"
    sim_cluster.kubectl("create", "namespace", name)
    yield name
    sim_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def api(sim_cluster: SimCluster, deployed_cluster: dict):
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(sim_cluster.kubeconfig))


def isvc(namespace: str, name: str = "wachttijden", min_replicas: int = 1) -> dict:
    return kb.build_inference_service(name, namespace, "s3://b/m/", min_replicas=min_replicas)


def unique(prefix: str = "wachttijden") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def write_status(api, manifest: dict, status: dict) -> None:
    """The status a controller would write (here: the test), through the status subresource."""
    kind = k8s.kind_of(manifest)
    meta = manifest["metadata"]
    api.patch_namespaced_custom_object_status(kind.group, kind.version, meta["namespace"], kind.plural, meta["name"],
                                              {"status": status})


def contains(stored: object, applied: object) -> bool:
    """Every field of the applied configuration has the same value in the stored object."""
    if isinstance(applied, dict):
        return isinstance(stored, dict) and all(k in stored and contains(stored[k], v) for k, v in applied.items())
    return stored == applied


class TestApply:
    def test_should_create_the_object_as_the_sluice_field_manager(self, api, namespace):
        manifest = isvc(namespace, unique())
        created = k8s.apply(manifest, api=api)
        assert contains(created, manifest)
        assert created["metadata"]["generation"] == 1
        entry = managers(created)["sluice"]
        # An Apply entry exists only for application/apply-patch requests with fieldManager=sluice.
        assert entry["operation"] == "Apply"
        assert owns(entry, "f:spec", "f:predictor", "f:model", "f:storageUri")

    def test_should_read_the_object_back_because_the_client_returns_nothing_for_201(self, api, namespace):
        manifest = isvc(namespace, unique())
        kind, meta = k8s.kind_of(manifest), manifest["metadata"]
        raw = api.patch_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, meta["name"],
                                                 manifest, field_manager="sluice", _content_type=k8s.APPLY_CONTENT_TYPE)
        assert raw is None  # the generated client maps only 200 to a body
        again = k8s.apply(isvc(namespace, unique()), api=api)
        assert again["metadata"]["resourceVersion"]

    def test_should_change_nothing_when_applied_twice(self, api, namespace):
        manifest = isvc(namespace, unique())
        first = k8s.apply(manifest, api=api)
        second = k8s.apply(manifest, api=api)
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        assert second["metadata"]["generation"] == 1

    def test_should_update_in_place_when_the_spec_changes(self, api, namespace):
        name = unique()
        first = k8s.apply(isvc(namespace, name, 1), api=api)
        second = k8s.apply(isvc(namespace, name, 2), api=api)
        assert second["metadata"]["uid"] == first["metadata"]["uid"]
        assert second["metadata"]["generation"] == 2
        assert second["spec"]["predictor"]["minReplicas"] == 2

    def test_should_apply_every_builder_kind_where_the_crds_serve_it(self, api, namespace, sim_cluster):
        manifests = kb.mirror_manifests(model_name=unique("m"), namespace=namespace, image="img:1",
                                        champion_uri="s3://b/1", challenger_uri="s3://b/2")
        applied = k8s.apply_all(manifests.values(), api=api)
        assert [o["kind"] for o in applied] == [m["kind"] for m in manifests.values()]
        for manifest in manifests.values():
            stored = get_json(sim_cluster, f"{manifest['kind'].lower()}s.{k8s.kind_of(manifest).group}",
                                          manifest["metadata"]["name"], "-n", namespace)
            assert contains(stored, manifest), manifest["kind"]
            assert managers(stored)["sluice"]["operation"] == "Apply"

    def test_should_take_back_a_field_another_manager_changed(self, api, namespace, sim_cluster):
        name = unique()
        k8s.apply(isvc(namespace, name, 1), api=api)
        sim_cluster.kubectl("patch", "inferenceservice", name, "-n", namespace, "--type=merge",
                            "--field-manager=kubectl-edit", "-p", '{"spec":{"predictor":{"minReplicas":5}}}')
        applied = k8s.apply(isvc(namespace, name, 1), api=api)
        assert applied["spec"]["predictor"]["minReplicas"] == 1
        owners = managers(applied)
        assert owns(owners["sluice"], "f:spec", "f:predictor", "f:minReplicas")
        assert not owns(owners.get("kubectl-edit", {}), "f:spec", "f:predictor", "f:minReplicas")

    def test_should_name_the_object_and_fields_of_a_real_conflict(self, api, namespace, sim_cluster):
        # FORCE_CONFLICTS is the one policy, so apply() never meets a 409 from this server; the same
        # apply without force shows the message it would give (webhooks and older servers may answer 409).
        from kubernetes.client.exceptions import ApiException

        assert k8s.FORCE_CONFLICTS is True
        name = unique()
        manifest = isvc(namespace, name, 1)
        k8s.apply(manifest, api=api)
        sim_cluster.kubectl("patch", "inferenceservice", name, "-n", namespace, "--type=merge",
                            "--field-manager=kubectl-edit", "-p", '{"spec":{"predictor":{"minReplicas":5}}}')
        kind = k8s.kind_of(manifest)
        with pytest.raises(ApiException) as err:
            api.patch_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name, manifest,
                                               field_manager="sluice", force=False,
                                               _content_type=k8s.APPLY_CONTENT_TYPE)
        message = k8s._describe_api_error(err.value, manifest)
        assert err.value.status == 409
        assert f"InferenceService {namespace}/{name}" in message
        assert "HTTP 409 Conflict" in message
        assert "kubectl-edit" in message and ".spec.predictor.minReplicas" in message
        assert "FORCE_CONFLICTS" in message

    @pytest.mark.parametrize(("field", "value", "says"), [
        ("minReplica", 2, ".spec.predictor.minReplica: field not declared in schema"),  # a typo of minReplicas
        ("minReplicas", "one", ".spec.predictor.minReplicas: expected numeric (int or float), got string"),
    ])
    def test_should_refuse_a_field_the_crd_does_not_declare_and_say_so(self, api, namespace, field, value, says):
        # The API server answers these applies with 500 "failed to create typed patch object", not 4xx:
        # the message must still point at the manifest rather than at a broken server.
        manifest = isvc(namespace, unique())
        manifest["spec"]["predictor"][field] = value
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(manifest, api=api)
        message = str(err.value)
        assert err.value.status == 500
        assert says in message
        assert "hint: the manifest does not fit the CRD installed in this cluster" in message

    def test_should_show_the_invalid_field_the_api_server_names(self, api, namespace):
        manifest = isvc(namespace, unique())
        del manifest["spec"]["predictor"]["model"]["modelFormat"]["name"]
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(manifest, api=api)
        message = str(err.value)
        assert err.value.status == 422
        assert "HTTP 422 Invalid" in message
        assert "causes:\n    spec.predictor.model.modelFormat.name: Required value" in message
        assert "hint: the object is invalid for this cluster's CRD schema" in message

    def test_should_say_the_namespace_or_crd_may_be_missing_on_404(self, api):
        with pytest.raises(k8s.ApplyError, match=r"(?s)HTTP 404.*no-such-namespace.*is the CRD installed") as err:
            k8s.apply(isvc("no-such-namespace"), api=api)
        assert err.value.status == 404

    def test_should_point_at_rbac_on_403(self, namespace, worker_kubeconfig):  # noqa: F811 - fixture
        from kubernetes import client, config

        worker = client.CustomObjectsApi(config.new_client_from_config(str(worker_kubeconfig)))
        with pytest.raises(k8s.ApplyError, match=r"(?s)HTTP 403 Forbidden.*airflow-worker.*RBAC Role") as err:
            k8s.apply(isvc(namespace, unique()), api=worker)
        assert err.value.status == 403

    def test_should_say_not_authenticated_on_401(self, sim_cluster):
        from kubernetes import client, config

        api_client = config.new_client_from_config(sim_cluster.kubeconfig)
        api_client.configuration.cert_file = api_client.configuration.key_file = None
        api_client.configuration.api_key = {"authorization": "Bearer not-a-token"}
        stranger = client.CustomObjectsApi(client.ApiClient(api_client.configuration))
        with pytest.raises(k8s.ApplyError, match="not authenticated") as err:
            k8s.apply(isvc("default", unique()), api=stranger)
        assert err.value.status == 401


class TestWaitReady:
    """Statuses written by the test (no controller runs here); the reads are the real server's."""

    def wait(self, api, manifest: dict, clock: Clock, timeout: float = 60, poll: float = 2) -> dict:
        meta = manifest["metadata"]
        return k8s.wait_ready(manifest["kind"], meta["name"], meta["namespace"], timeout, api=api, clock=clock,
                              sleep=clock.sleep, poll_interval=poll)

    def test_should_poll_until_ready_and_return_the_object(self, api, namespace):
        manifest = isvc(namespace, unique())
        k8s.apply(manifest, api=api)
        statuses = [NOT_READY, ready()]
        clock = Clock(lambda: write_status(api, manifest, statuses.pop(0)))
        obj = self.wait(api, manifest, clock)
        assert clock.sleeps == [2, 2]
        assert k8s.status_url(obj) == "http://wachttijden-predictor.apply.svc.cluster.local"

    def test_should_wait_while_the_object_does_not_exist_yet(self, api, namespace):
        clock = Clock()
        with pytest.raises(TimeoutError, match="object not found"):
            self.wait(api, isvc(namespace, unique()), clock, timeout=10, poll=5)
        assert clock.sleeps == [5, 5]

    def test_should_time_out_with_the_stored_conditions_in_the_message(self, api, namespace):
        manifest = isvc(namespace, unique())
        k8s.apply(manifest, api=api)
        write_status(api, manifest, NOT_READY)
        clock = Clock()
        with pytest.raises(TimeoutError) as err:
            self.wait(api, manifest, clock, timeout=30, poll=5)
        message = str(err.value)
        assert f"InferenceService {namespace}/{manifest['metadata']['name']} not Ready after 30s" in message
        assert ("PredictorReady=False (ProgressDeadlineExceeded): Deployment wachttijden-predictor exceeded its "
                "progress deadline") in message
        assert "Ready=False (ProgressDeadlineExceeded): predictor not ready" in message
        assert clock.now >= 30

    def test_should_not_trust_a_ready_condition_of_an_older_generation(self, api, namespace):
        name = unique()
        k8s.apply(isvc(namespace, name, 1), api=api)
        manifest = isvc(namespace, name, 2)
        assert k8s.apply(manifest, api=api)["metadata"]["generation"] == 2
        write_status(api, manifest, ready(generation=1))
        clock = Clock(lambda: write_status(api, manifest, ready(generation=2)))
        obj = self.wait(api, manifest, clock, poll=1)
        assert obj["status"]["observedGeneration"] == 2
        assert clock.sleeps == [1]

    def test_should_fail_at_once_when_the_model_cannot_load(self, api, namespace):
        manifest = isvc(namespace, unique())
        k8s.apply(manifest, api=api)
        write_status(api, manifest, {**NOT_READY, "modelStatus": {
            "transitionStatus": "BlockedByFailedLoad",
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "storage initializer: 403 Forbidden"}}})
        clock = Clock()
        with pytest.raises(RuntimeError, match=r"(?s)BlockedByFailedLoad: ModelLoadFailed storage .*403.*Ready=False"):
            self.wait(api, manifest, clock, timeout=600)
        assert clock.sleeps == []


class StatusWriter(threading.Thread):
    """Plays KServe's part for apply_in_order (which sleeps for real): once each InferenceService exists,
    records whether any routing object exists yet, then writes its status; once the graph exists, marks
    it Ready. Statuses written by the test."""

    def __init__(self, api, manifests: list[dict], services: dict[str, dict], graph_status: dict) -> None:
        super().__init__(daemon=True)
        self.api, self.manifests, self.services, self.graph_status = api, manifests, services, graph_status
        self.routing_seen_before_ready: list[str] = []
        self.done = threading.Event()

    def exists(self, manifest: dict) -> bool:
        meta = manifest["metadata"]
        return k8s.get(manifest["kind"], meta["name"], meta["namespace"], api=self.api) is not None

    def run(self) -> None:
        pending = {m["metadata"]["name"]: m for m in self.manifests if m["kind"] == "InferenceService"}
        routing = [m for m in self.manifests if m["kind"] not in k8s.SERVING_KINDS]
        graph = next(m for m in routing if m["kind"] == "InferenceGraph")
        while not self.done.wait(0.05):
            for name, manifest in list(pending.items()):
                if self.exists(manifest):
                    self.routing_seen_before_ready += [m["kind"] for m in routing if self.exists(m)]
                    write_status(self.api, manifest, self.services[name])
                    del pending[name]
            if not pending and self.graph_status and self.exists(graph):
                write_status(self.api, graph, self.graph_status)
                return


@pytest.fixture
def fresh_namespace(sim_cluster: SimCluster, deployed_cluster: dict) -> Iterator[str]:
    """A namespace of its own: the mirror objects share one Gateway name per namespace."""
    name = f"order-{uuid.uuid4().hex[:6]}"
    sim_cluster.kubectl("create", "namespace", name)
    yield name
    sim_cluster.kubectl("delete", "namespace", name, "--wait=false")


class TestApplyOrder:
    def mirror(self, namespace: str) -> tuple[str, list[dict]]:
        model = unique("m")
        manifests = kb.mirror_manifests(model_name=model, namespace=namespace, image="img:1",
                                        champion_uri="s3://b/1", challenger_uri="s3://b/2")
        return model, list(manifests.values())

    def test_should_route_only_after_the_services_are_ready(self, api, fresh_namespace, sim_cluster):
        namespace = fresh_namespace
        model, manifests = self.mirror(namespace)
        graph_url = f"http://{model}-mirror.{namespace}.svc.cluster.local"
        writer = StatusWriter(api, manifests, {
            model: ready(url=f"http://{model}-predictor"), f"{model}-challenger": ready(url=f"http://{model}-c")},
            {"observedGeneration": 1, "url": graph_url, "conditions": [{"type": "Ready", "status": "True"}]})
        writer.start()
        try:
            urls = k8s.apply_in_order(manifests, api=api, timeout=120, poll_interval=0.1)
        finally:
            writer.done.set()
            writer.join()
        assert writer.routing_seen_before_ready == []
        assert urls == {model: f"http://{model}-predictor", f"{model}-challenger": f"http://{model}-c",
                        f"{model}-mirror": graph_url}
        stored = get_json(sim_cluster, "virtualservice", f"{model}-shadow", "-n", namespace)
        assert managers(stored)["sluice"]["operation"] == "Apply"

    def test_should_not_apply_the_routing_when_a_service_fails(self, api, fresh_namespace):
        model, manifests = self.mirror(fresh_namespace)
        failed = {**NOT_READY, "modelStatus": {"transitionStatus": "InvalidSpec"}}
        writer = StatusWriter(api, manifests, {model: failed, f"{model}-challenger": ready()}, {})
        writer.start()
        try:
            with pytest.raises(RuntimeError, match="InvalidSpec"):
                k8s.apply_in_order(manifests, api=api, timeout=120, poll_interval=0.1)
        finally:
            writer.done.set()
            writer.join()
        routing = [m for m in manifests if m["kind"] not in k8s.SERVING_KINDS]
        assert [m["kind"] for m in routing if writer.exists(m)] == []
        assert writer.routing_seen_before_ready == []
