"""The Kubernetes target through the real kubernetes client against a recording fake API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tasks.config import Settings
from tasks.deploy import kubernetes as k8s
from tasks.deploy import manifests as kb
from tasks.deploy.deployment import Deployment
from tasks.registry import ResolvedVersion
from tests.tasks.fake_kube_api import (
    INVALID,
    ISVC_PATH,
    NOT_READY,
    NS,
    FakeClock,
    FakeKubeApi,
    api_client,
    conflict_status,
    object_path,
    ready,
    running_fake,
)


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with running_fake() as server:
        yield server


@pytest.fixture
def api(fake: FakeKubeApi) -> client.CustomObjectsApi:
    return api_client(fake)


def isvc(min_replicas: int = 1) -> dict:
    return kb.build_inference_service("wachttijden", NS, "s3://b/m/", min_replicas=min_replicas)


class TestApply:
    def test_should_send_a_server_side_apply_patch_as_the_sluice_field_manager(self, fake, api):
        created = k8s.apply(isvc(), api=api)
        call, read_back = fake.calls
        assert call["method"] == "PATCH"
        assert call["path"] == ISVC_PATH
        assert call["content_type"] == "application/apply-patch+yaml"
        assert call["query"] == {"fieldManager": "sluice", "fieldValidation": "Strict", "force": "True"}
        assert call["body"] == isvc()
        assert created["metadata"]["resourceVersion"] == "1000"
        assert created["spec"] == isvc()["spec"]
        # Creating answers 201, which the generated client returns as None: the layer reads back.
        assert (read_back["method"], read_back["path"]) == ("GET", ISVC_PATH)

    def test_should_not_read_back_when_the_apply_answers_200(self, fake, api):
        k8s.apply(isvc(), api=api)
        fake.calls.clear()
        k8s.apply(isvc(2), api=api)
        assert [c["method"] for c in fake.calls] == ["PATCH"]

    def test_should_change_nothing_when_applied_twice(self, fake, api):
        first = k8s.apply(isvc(), api=api)
        second = k8s.apply(isvc(), api=api)
        patches = [c["body"] for c in fake.calls if c["method"] == "PATCH"]
        assert patches == [isvc(), isvc()]  # the same patch both times
        assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        assert second["metadata"]["generation"] == first["metadata"]["generation"] == 1

    def test_should_update_in_place_when_the_spec_changes(self, fake, api):
        first = k8s.apply(isvc(1), api=api)
        second = k8s.apply(isvc(2), api=api)
        assert second["metadata"]["uid"] == first["metadata"]["uid"]
        assert second["metadata"]["generation"] == 2
        assert second["spec"]["predictor"]["minReplicas"] == 2

    def test_should_apply_every_builder_kind_to_its_api_path(self, fake, api):
        manifests = kb.mirror_manifests(
            model_name="wachttijden",
            namespace=NS,
            image="img:1",
            champion_uri="s3://b/1",
            challenger_uri="s3://b/2",
        )
        k8s.apply_all(manifests.values(), api=api)
        assert [c["path"] for c in fake.calls if c["method"] == "PATCH"] == [
            f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/servingruntimes/sluice-mlflow",
            ISVC_PATH,
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/wachttijden-challenger",
            f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/inferencegraphs/wachttijden-mirror",
            f"/apis/networking.istio.io/v1/namespaces/{NS}/gateways/sluice-models-gateway",
            f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/wachttijden-shadow",
        ]

    def test_should_take_back_a_field_changed_by_hand(self, fake, api):
        k8s.apply(isvc(1), api=api)
        fake.edit_by_hand(ISVC_PATH, "spec.predictor.minReplicas", 5)
        applied = k8s.apply(isvc(1), api=api)
        assert applied["spec"]["predictor"]["minReplicas"] == 1

    def test_should_force_ownership_as_the_one_conflict_policy(self, fake, api):
        assert k8s.FORCE_CONFLICTS is True
        k8s.apply(isvc(1), api=api)
        fake.edit_by_hand(ISVC_PATH, "spec.predictor.minReplicas", 5)
        k8s.apply(isvc(1), api=api)
        assert all(c["query"].get("force") == "True" for c in fake.calls if c["method"] == "PATCH")

    def test_should_report_a_conflict_with_its_fields(self, fake, api):
        # The API server only answers 409 to an apply that does not force; a webhook or an older
        # server may still: the message must name the object and the fields.
        fake.script("PATCH", ISVC_PATH, 409, conflict_status(["spec.predictor.minReplicas"]))
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(isvc(1), api=api)
        assert err.value.status == 409
        message = str(err.value)
        assert "InferenceService models/wachttijden" in message
        assert "HTTP 409 Conflict" in message
        assert "spec.predictor.minReplicas" in message
        assert "FORCE_CONFLICTS" in message

    def test_should_say_the_crd_may_be_missing_on_404(self, fake, api):
        fake.plurals.discard("inferencegraphs")
        graph = kb.build_mirror_inference_graph("g", NS, "a", "b")
        with pytest.raises(k8s.ApplyError, match=r"(?s)HTTP 404.*is the CRD installed") as err:
            k8s.apply(graph, api=api)
        assert err.value.status == 404

    def test_should_show_the_invalid_field_on_422(self, fake, api):
        fake.script("PATCH", ISVC_PATH, 422, INVALID)
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(isvc(), api=api)
        message = str(err.value)
        assert "HTTP 422 Invalid" in message
        assert "admission webhook" in message
        assert "spec.predictor.minReplicas: Invalid value: -1: must be >= 0" in message

    def test_should_refuse_unknown_kinds_and_versions_before_calling(self, fake, api):
        with pytest.raises(ValueError, match="unsupported kind"):
            k8s.apply(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}}, api=api
            )
        with pytest.raises(ValueError, match="apiVersion serving.kserve.io/v1beta1"):
            k8s.apply({**isvc(), "apiVersion": "serving.kserve.io/v1alpha1"}, api=api)
        assert fake.calls == []


class TestWaitReady:
    def test_should_poll_until_ready_and_return_the_object(self, fake, api):
        k8s.apply(isvc(), api=api)
        fake.set_statuses(ISVC_PATH, {}, NOT_READY, ready())
        clock = FakeClock()
        obj = k8s.wait_ready(
            "InferenceService",
            "wachttijden",
            NS,
            60,
            api=api,
            clock=clock,
            sleep=clock.sleep,
            poll_interval=2,
        )
        assert clock.sleeps == [2, 2]
        assert k8s.status_url(obj) == "http://wachttijden-predictor.models.svc.cluster.local"
        assert [c["method"] for c in fake.calls] == ["PATCH", "GET"] + ["GET"] * 3

    def test_should_wait_while_the_object_does_not_exist_yet(self, fake, api):
        clock = FakeClock()
        with pytest.raises(TimeoutError, match="object not found"):
            k8s.wait_ready(
                "InferenceService",
                "wachttijden",
                NS,
                10,
                api=api,
                clock=clock,
                sleep=clock.sleep,
                poll_interval=5,
            )

    def test_should_time_out_with_the_status_conditions_in_the_message(self, fake, api):
        k8s.apply(isvc(), api=api)
        fake.set_statuses(ISVC_PATH, NOT_READY)
        clock = FakeClock()
        with pytest.raises(TimeoutError) as err:
            k8s.wait_ready(
                "InferenceService",
                "wachttijden",
                NS,
                30,
                api=api,
                clock=clock,
                sleep=clock.sleep,
                poll_interval=5,
            )
        message = str(err.value)
        assert "InferenceService models/wachttijden not Ready after 30s" in message
        assert (
            "PredictorReady=False (ProgressDeadlineExceeded): Deployment wachttijden-predictor exceeded "
            "its progress deadline"
        ) in message
        assert "Ready=False (ProgressDeadlineExceeded): predictor not ready" in message
        assert clock.now >= 30

    def test_should_not_trust_a_ready_condition_of_an_older_generation(self, fake, api):
        k8s.apply(isvc(1), api=api)
        k8s.apply(isvc(2), api=api)  # generation 2
        fake.set_statuses(ISVC_PATH, ready(generation=1), ready(generation=2))
        clock = FakeClock()
        obj = k8s.wait_ready(
            "InferenceService",
            "wachttijden",
            NS,
            60,
            api=api,
            clock=clock,
            sleep=clock.sleep,
            poll_interval=1,
        )
        assert obj["status"]["observedGeneration"] == 2
        assert clock.sleeps == [1]

    def test_should_fail_at_once_when_the_model_cannot_load(self, fake, api):
        k8s.apply(isvc(), api=api)
        failed = {
            **NOT_READY,
            "modelStatus": {
                "transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {
                    "reason": "ModelLoadFailed",
                    "message": "storage initializer: 403 Forbidden",
                },
            },
        }
        fake.set_statuses(ISVC_PATH, failed)
        clock = FakeClock()
        with pytest.raises(
            RuntimeError, match=r"(?s)BlockedByFailedLoad: ModelLoadFailed storage .*403.*Ready=False"
        ):
            k8s.wait_ready(
                "InferenceService", "wachttijden", NS, 600, api=api, clock=clock, sleep=clock.sleep
            )
        assert clock.sleeps == []

    def test_should_refuse_to_wait_for_kinds_without_ready(self, api):
        with pytest.raises(ValueError, match="no Ready condition"):
            k8s.wait_ready("ServingRuntime", "sluice-mlflow", NS, 1, api=api)

    def test_should_summarize_missing_conditions(self):
        assert "no status conditions" in k8s.conditions_summary({"status": {}})


GRAPH_PATH = object_path("inferencegraphs", "wachttijden-mirror")
CHALLENGER_PATH = object_path("inferenceservices", "wachttijden-challenger")


def mirror_objects() -> list[dict]:
    return list(
        kb.mirror_manifests(
            model_name="wachttijden", namespace=NS, image="img:1", champion_uri="s3://b/1", challenger_uri="s3://b/2"
        ).values()
    )


def graph_ready() -> dict:
    return {"observedGeneration": 1, "url": "http://wachttijden-mirror.models.svc.cluster.local",
            "conditions": [{"type": "Ready", "status": "True"}]}


class TestApplyOrder:
    def test_should_route_only_after_the_services_are_ready(self, fake, api):
        # The first status is read back right after the create; the wait then polls twice.
        fake.set_statuses(ISVC_PATH, NOT_READY, NOT_READY, ready())
        fake.set_statuses(CHALLENGER_PATH, ready(url="http://wachttijden-challenger-predictor.models.svc"))
        fake.set_statuses(GRAPH_PATH, graph_ready())
        urls = k8s.apply_in_order(mirror_objects(), api=api, poll_interval=0.01)
        patched = [c["path"].rsplit("/", 2)[-2] for c in fake.calls if c["method"] == "PATCH"]
        assert patched == [
            "servingruntimes", "inferenceservices", "inferenceservices", "inferencegraphs", "gateways",
            "virtualservices",
        ]
        calls = [(c["method"], c["path"]) for c in fake.calls]
        services_applied = calls.index(("PATCH", CHALLENGER_PATH))
        routing_applied = calls.index(("PATCH", GRAPH_PATH))
        polls = [c for c in calls[services_applied:routing_applied] if c == ("GET", ISVC_PATH)]
        assert len(polls) == 2  # not Ready, then Ready: only then the graph
        assert calls[-1] == ("GET", GRAPH_PATH)  # and the graph itself is waited for
        assert urls == {
            "wachttijden": "http://wachttijden-predictor.models.svc.cluster.local",
            "wachttijden-challenger": "http://wachttijden-challenger-predictor.models.svc",
            "wachttijden-mirror": "http://wachttijden-mirror.models.svc.cluster.local",
        }

    def test_should_not_apply_the_routing_when_a_service_fails(self, fake, api):
        failed = {**NOT_READY, "modelStatus": {"transitionStatus": "InvalidSpec"}}
        fake.set_statuses(ISVC_PATH, failed)
        with pytest.raises(RuntimeError, match="InvalidSpec"):
            k8s.apply_in_order(mirror_objects(), api=api, poll_interval=0.01)
        kinds = {c["path"].rsplit("/", 2)[-2] for c in fake.calls if c["method"] == "PATCH"}
        assert kinds == {"servingruntimes", "inferenceservices"}


def cluster_settings() -> Settings:
    return Settings(deploy_target="kubernetes", kserve_namespace=NS, serving_image="img:2",
                    mlflow_artifacts_destination="s3://bucket/mlflow")


def version(number: str) -> ResolvedVersion:
    return ResolvedVersion(name="wachttijden", ref=number, version=number, run_id="r",
                           download_uri=f"mlflow-artifacts:/1/models/m-{number}/artifacts")


class TestKubernetesTarget:
    def test_should_apply_the_services_then_route_and_wait_in_the_wait_step(self, fake, api):
        fake.set_statuses(ISVC_PATH, ready())
        fake.set_statuses(CHALLENGER_PATH, ready(url="http://c"))
        fake.set_statuses(GRAPH_PATH, graph_ready())
        served = k8s.serve_mirroring(cluster_settings(), version("3"), version("4"), 25.0, api=api)
        applied = [c["path"].rsplit("/", 2)[-2] for c in fake.calls if c["method"] == "PATCH"]
        assert applied == ["servingruntimes", "inferenceservices", "inferenceservices"]
        # Through XCom and back, as the DAG hands it from serve to wait_ready.
        waited = k8s.wait(cluster_settings(), Deployment.from_dict(served.to_dict()), api=api, poll_interval=0.01)
        applied = [c["path"].rsplit("/", 2)[-2] for c in fake.calls if c["method"] == "PATCH"]
        assert applied[3:] == ["inferencegraphs", "gateways", "virtualservices"]
        assert waited.entry == "wachttijden-mirror" and waited.entry_path == ""
        assert waited.challenger == "wachttijden-challenger"
        assert set(waited.urls) == {"wachttijden", "wachttijden-challenger", "wachttijden-mirror"}
        isvc_obj = fake.objects[ISVC_PATH]
        assert isvc_obj["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/mlflow/1/models/m-3/artifacts/"
        assert isvc_obj["metadata"]["labels"]["sluice.io/model-version"] == "3"
        vs = fake.objects[object_path("virtualservices", "wachttijden-shadow")]
        assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 25.0}
        assert waited.versions["challenger"]["version"] == "4"

    def test_should_serve_one_model_on_its_infer_path(self, fake, api):
        fake.set_statuses(ISVC_PATH, ready())
        served = k8s.serve_model(cluster_settings(), version("7"), api=api)
        waited = k8s.wait(cluster_settings(), served, api=api, poll_interval=0.01)
        assert waited.entry == "wachttijden" and waited.entry_path == "/v2/models/wachttijden/infer"
        assert waited.urls == {"wachttijden": "http://wachttijden-predictor.models.svc.cluster.local"}
        runtime = fake.objects[object_path("servingruntimes", "sluice-mlflow")]
        assert runtime["spec"]["containers"][0]["image"] == "img:2"
