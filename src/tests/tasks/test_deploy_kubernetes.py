"""The apply layer where only a recording fake API server will do.

Everything a real API server can show (server-side apply and field ownership, the server's 404, 422,
403, 401 and no-force 409 answers, the waits, the apply order) runs against the simulated cluster in
src/tests/cluster/test_apply_layer.py and, with KServe's own controller, test_kserve_controller.py and
test_deploy_dags_cluster.py. Kept here:
- the requests the layer sends (one PATCH, and a GET only after a 201): a real server cannot record them;
- a 409 answered to a forced apply: the API server never gives one, a webhook or an older server may;
- checks that make no request at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tasks.deploy import kubernetes as k8s
from tasks.deploy import manifests as kb
from tests.tasks.fake_kube_api import ISVC_PATH, NS, FakeKubeApi, api_client, conflict_status, running_fake


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with running_fake() as server:
        yield server


@pytest.fixture
def api(fake: FakeKubeApi) -> client.CustomObjectsApi:
    return api_client(fake)


def isvc(min_replicas: int = 1) -> dict:
    return kb.build_inference_service("wachttijden", NS, "s3://b/m/", min_replicas=min_replicas)


class TestRequests:
    def test_should_send_one_apply_patch_and_read_back_only_after_a_create(self, fake, api):
        k8s.apply(isvc(), api=api)
        call, read_back = fake.calls
        assert (call["method"], call["path"], call["content_type"]) == ("PATCH", ISVC_PATH, k8s.APPLY_CONTENT_TYPE)
        assert call["query"] == {"fieldManager": "sluice", "fieldValidation": "Strict", "force": "True"}
        assert call["body"] == isvc()
        # Creating answers 201, which the generated client returns as None: the layer reads back.
        assert (read_back["method"], read_back["path"]) == ("GET", ISVC_PATH)
        fake.calls.clear()
        k8s.apply(isvc(2), api=api)  # an update answers 200 with the object
        assert [c["method"] for c in fake.calls] == ["PATCH"]

    def test_should_refuse_unknown_kinds_and_versions_before_calling(self, fake, api):
        with pytest.raises(ValueError, match="unsupported kind"):
            k8s.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}}, api=api)
        with pytest.raises(ValueError, match="apiVersion serving.kserve.io/v1beta1"):
            k8s.apply({**isvc(), "apiVersion": "serving.kserve.io/v1alpha1"}, api=api)
        with pytest.raises(ValueError, match="no Ready condition"):
            k8s.wait_ready("ServingRuntime", "sluice-mlflow", NS, 1, api=api)
        assert fake.calls == []


class TestConflictOnAForcedApply:
    def test_should_report_the_conflict_with_its_fields(self, fake, api):
        fake.script("PATCH", ISVC_PATH, 409, conflict_status(["spec.predictor.minReplicas"]))
        with pytest.raises(k8s.ApplyError) as err:
            k8s.apply(isvc(1), api=api)
        assert err.value.status == 409
        message = str(err.value)
        assert "InferenceService models/wachttijden" in message
        assert "HTTP 409 Conflict" in message
        assert "spec.predictor.minReplicas" in message
        assert "FORCE_CONFLICTS" in message


def test_should_summarize_missing_conditions():
    assert "no status conditions" in k8s.conditions_summary({"status": {}})
    assert "object not found" in k8s.conditions_summary(None)
