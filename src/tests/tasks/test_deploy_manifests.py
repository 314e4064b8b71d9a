"""The pure KServe/Istio builders, storage URIs and the image pin: the fields that matter, CRD-schema validity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tasks.deploy import manifests as kb
from tasks.deploy import names, versions
from tasks.deploy.storage import storage_uri_for

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("SLUICE_SHARED_DIR", REPO_ROOT.parent / "shared"))
SCHEMAS = SHARED / "crd-schemas"

NS = "models"
URI = "s3://bucket/mlflow/1/models/m-abc/artifacts"


def validate(manifest: dict) -> None:
    """Validate against ../shared/crd-schemas/<group>/<kind>_<version>.json; skip when absent."""
    group, version = manifest["apiVersion"].split("/")
    path = SCHEMAS / group / f"{manifest['kind'].lower()}_{version}.json"
    if not path.exists():
        pytest.skip(f"CRD schema {path} not found (set SLUICE_SHARED_DIR to the shared folder)")
    schema = json.loads(path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(manifest)


class TestStorageUri:
    def test_should_end_cloud_uris_with_a_slash(self):
        assert storage_uri_for("s3://b/p/artifacts") == "s3://b/p/artifacts/"
        assert storage_uri_for("gs://b/p/") == "gs://b/p/"
        assert storage_uri_for("pvc://models-pvc/wachttijden") == "pvc://models-pvc/wachttijden/"

    def test_should_rewrite_wasbs_to_the_blob_https_endpoint(self):
        uri = "wasbs://mlflow@sluicedata.blob.core.windows.net/1/models/m-1/artifacts"
        assert (
            storage_uri_for(uri)
            == "https://sluicedata.blob.core.windows.net/mlflow/1/models/m-1/artifacts/"
        )

    def test_should_rewrite_abfss_through_the_blob_endpoint(self):
        uri = "abfss://lake@acct.dfs.core.windows.net/a/b"
        assert storage_uri_for(uri) == "https://acct.blob.core.windows.net/lake/a/b/"

    def test_should_map_mlflow_artifacts_onto_the_artifact_root(self):
        uri = "mlflow-artifacts:/1/models/m-abc/artifacts"
        assert storage_uri_for(uri, artifact_root="s3://bucket/mlflow/") == URI + "/"
        # The host-qualified form the client sometimes returns maps the same way.
        uri = "mlflow-artifacts://mlflow.mlflow.svc:5000/1/models/m-abc/artifacts"
        assert storage_uri_for(uri, artifact_root="s3://bucket/mlflow") == URI + "/"

    def test_should_map_mlflow_artifacts_onto_an_azure_root(self):
        uri = storage_uri_for(
            "mlflow-artifacts:/1/x", artifact_root="wasbs://mlflow@acct.blob.core.windows.net/root"
        )
        assert uri == "https://acct.blob.core.windows.net/mlflow/root/1/x/"

    def test_should_reject_mlflow_artifacts_without_a_root_and_say_why(self):
        with pytest.raises(ValueError, match="storage initializer cannot read.*artifacts-destination"):
            storage_uri_for("mlflow-artifacts:/1/models/m-abc/artifacts")

    @pytest.mark.parametrize(
        "uri",
        ["runs:/abc/model", "models:/wachttijden/1", "/tmp/mlruns/1/x", "file:///tmp/x", "ftp://h/x", ""],
    )
    def test_should_reject_what_a_pod_cannot_read(self, uri):
        with pytest.raises(ValueError):
            storage_uri_for(uri)


class TestInferenceService:
    def test_should_serve_an_mlflow_model_with_the_project_runtime_over_v2(self):
        isvc = kb.build_inference_service("wachttijden", NS, URI)
        validate(isvc)
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert isvc["metadata"] == {
            "name": "wachttijden",
            "namespace": NS,
            "labels": {"app.kubernetes.io/part-of": "sluice"},
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        }
        model = isvc["spec"]["predictor"]["model"]
        assert model["modelFormat"] == {"name": "mlflow"}
        assert model["protocolVersion"] == "v2"
        assert model["runtime"] == "sluice-mlflow"
        assert model["storageUri"] == URI + "/"
        assert "nvidia.com/gpu" not in model["resources"]["limits"]
        assert "args" not in model
        assert isvc["spec"]["predictor"]["minReplicas"] == 1
        assert "serviceAccountName" not in isvc["spec"]["predictor"]

    def test_should_normalize_an_azure_download_uri(self):
        isvc = kb.build_inference_service("m", NS, "wasbs://c@acct.blob.core.windows.net/p")
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == "https://acct.blob.core.windows.net/c/p/"

    def test_should_set_storage_credentials_gpu_replicas_and_resources(self):
        isvc = kb.build_inference_service(
            "m",
            NS,
            URI,
            service_account="sluice-models",
            gpu=1,
            min_replicas=2,
            max_replicas=4,
            resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            labels={"sluice.io/model-version": "7"},
            annotations={"team": "ml"},
        )
        validate(isvc)
        predictor = isvc["spec"]["predictor"]
        assert predictor["serviceAccountName"] == "sluice-models"
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 4)
        assert predictor["model"]["resources"] == {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
        }
        assert isvc["metadata"]["labels"]["sluice.io/model-version"] == "7"
        assert isvc["metadata"]["annotations"]["team"] == "ml"

    def test_should_not_share_the_default_resources_between_objects(self):
        a = kb.build_inference_service("a", NS, URI, gpu=1)
        b = kb.build_inference_service("b", NS, URI)
        assert "nvidia.com/gpu" in a["spec"]["predictor"]["model"]["resources"]["limits"]
        assert "nvidia.com/gpu" not in b["spec"]["predictor"]["model"]["resources"]["limits"]

    def test_should_answer_under_another_model_name_in_the_spelling_kserve_parses(self):
        isvc = kb.build_inference_service("wachttijden-challenger", NS, URI, served_model_name="wachttijden")
        validate(isvc)
        assert isvc["spec"]["predictor"]["model"]["args"] == ["--model_name=wachttijden"]

    def test_should_leave_the_deployment_mode_to_the_cluster_when_asked(self):
        isvc = kb.build_inference_service("m", NS, URI, deployment_mode=None)
        assert "annotations" not in isvc["metadata"]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"name": "Bad_Name"},
            {"namespace": "a" * 64},
            {"protocol_version": "v3"},
            {"gpu": -1},
            {"min_replicas": 3, "max_replicas": 2},
            {"storage_uri": "mlflow-artifacts:/1/x"},
        ],
    )
    def test_should_reject_invalid_input(self, kwargs):
        args = {"name": "m", "namespace": NS, "storage_uri": URI} | kwargs
        with pytest.raises(ValueError):
            kb.build_inference_service(
                args.pop("name"), args.pop("namespace"), args.pop("storage_uri"), **args
            )


class TestServingRuntime:
    def test_should_run_the_sluice_model_server_for_mlflow_models(self):
        runtime = kb.build_serving_runtime("ghcr.io/x/sluice-serving:1.0", NS)
        validate(runtime)
        assert runtime["metadata"]["name"] == "sluice-mlflow"
        assert runtime["metadata"]["namespace"] == NS
        spec = runtime["spec"]
        assert spec["supportedModelFormats"] == [{"name": "mlflow", "autoSelect": True, "priority": 2}]
        assert spec["protocolVersions"] == ["v1", "v2"]
        (container,) = spec["containers"]
        assert container["name"] == "kserve-container"
        assert container["image"] == "ghcr.io/x/sluice-serving:1.0"
        command_line = container["command"] + container["args"]
        assert command_line[:11] == [
            "python",
            "-m",
            "serving.model_server",
            "--model-uri",
            "/mnt/models",
            "--model-name",
            "{{.Name}}",
            "--http-port",
            "8080",
            "--host",
            "0.0.0.0",
        ]
        assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
        assert container["securityContext"]["runAsNonRoot"] is True

    def test_should_also_validate_as_a_cluster_serving_runtime_spec(self):
        # Same spec type: a cluster-wide variant only differs in kind and namespace.
        runtime = kb.build_serving_runtime("img:1", NS)
        cluster = {**runtime, "kind": "ClusterServingRuntime", "metadata": {"name": "sluice-mlflow"}}
        validate(cluster)

    @pytest.mark.parametrize("image", ["", "has space:1"])
    def test_should_reject_a_bad_image(self, image):
        with pytest.raises(ValueError):
            kb.build_serving_runtime(image, NS)

    def test_should_read_the_pinned_image_once(self, monkeypatch, tmp_path):
        monkeypatch.delenv("SLUICE_SERVING_IMAGE", raising=False)
        pins = tmp_path / "versions.env"
        pins.write_text(
            '# pins\nSERVING_IMAGE_REPOSITORY=reg/sluice-serving\nSERVING_IMAGE_TAG="1.2.3"\n'
        )
        assert versions.serving_image(pins) == "reg/sluice-serving:1.2.3"
        monkeypatch.setenv("SLUICE_SERVING_IMAGE", "localhost:5001/sluice-serving:dev")
        assert versions.serving_image(pins) == "localhost:5001/sluice-serving:dev"

    def test_should_have_a_pinned_image_in_the_repository(self, monkeypatch):
        monkeypatch.delenv("SLUICE_SERVING_IMAGE", raising=False)
        repository, tag = versions.serving_image().rsplit(":", 1)
        assert repository and tag and tag != "latest"


class TestMirrorInferenceGraph:
    def test_should_call_the_challenger_softly_then_answer_with_the_champion(self):
        graph = kb.build_mirror_inference_graph(
            "wachttijden-mirror", NS, "wachttijden", "wachttijden-challenger"
        )
        validate(graph)
        assert graph["apiVersion"] == "serving.kserve.io/v1alpha1"
        assert list(graph["spec"]["nodes"]) == ["root"]
        root = graph["spec"]["nodes"]["root"]
        assert root["routerType"] == "Sequence"
        first, second = root["steps"]
        assert first["serviceName"] == "wachttijden-challenger"
        assert first["dependency"] == "Soft"
        assert "data" not in first or first["data"] == "$request"
        # Last step's response is the graph's response; $request = the caller's original body.
        assert second["serviceName"] == "wachttijden"
        assert second["data"] == "$request"
        assert second["dependency"] == "Hard"

    def test_should_reject_a_bad_service_name(self):
        with pytest.raises(ValueError):
            kb.build_mirror_inference_graph("g", NS, "Champion", "c")


class TestMirrorVirtualService:
    def test_should_route_to_the_champion_and_mirror_a_share_to_the_challenger(self):
        vs = kb.build_mirror_virtual_service(
            "wachttijden-shadow",
            NS,
            "wachttijden-shadow-models.sluice.example.com",
            names.predictor_host("wachttijden", NS),
            names.predictor_host("wachttijden-challenger", NS),
            25,
        )
        validate(vs)
        assert vs["apiVersion"] == "networking.istio.io/v1"
        spec = vs["spec"]
        assert spec["hosts"] == ["wachttijden-shadow-models.sluice.example.com"]
        assert spec["gateways"] == ["models/sluice-models-gateway"]
        (http,) = spec["http"]
        assert http["route"] == [
            {
                "destination": {
                    "host": "wachttijden-predictor.models.svc.cluster.local",
                    "port": {"number": 80},
                },
                "weight": 100,
            }
        ]
        assert http["mirror"] == {
            "host": "wachttijden-challenger-predictor.models.svc.cluster.local",
            "port": {"number": 80},
        }
        assert http["mirrorPercentage"] == {"value": 25.0}
        assert isinstance(http["mirrorPercentage"]["value"], float)

    def test_should_take_several_hosts_and_gateways(self):
        vs = kb.build_mirror_virtual_service(
            "v", NS, ["a.example.com", "b"], "c", "d", 0.5, gateways=["mesh"]
        )
        validate(vs)
        assert vs["spec"]["hosts"] == ["a.example.com", "b"]
        assert vs["spec"]["gateways"] == ["mesh"]
        assert vs["spec"]["http"][0]["mirrorPercentage"]["value"] == 0.5

    @pytest.mark.parametrize("percent", [-1, 100.5])
    def test_should_reject_a_percentage_outside_0_100(self, percent):
        with pytest.raises(ValueError):
            kb.build_mirror_virtual_service("v", NS, "h", "c", "d", percent)


class TestGateway:
    def test_should_bind_the_mirror_host_on_the_ingress_gateway_pods(self):
        gateway = kb.build_gateway(NS, "wachttijden-shadow-models.sluice.example.com")
        validate(gateway)
        assert gateway["metadata"]["name"] == "sluice-models-gateway"
        assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
        assert gateway["spec"]["servers"] == [
            {
                "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                "hosts": ["wachttijden-shadow-models.sluice.example.com"],
            }
        ]


class TestReferencedServices:
    def test_should_list_what_a_router_must_resolve(self):
        graph = kb.build_mirror_inference_graph("g", NS, "champ", "chall")
        assert kb.referenced_services(graph) == ["chall", "champ"]
        vs = kb.build_mirror_virtual_service(
            "v", NS, "h", names.predictor_host("champ", NS), names.predictor_host("chall", NS), 100
        )
        assert kb.referenced_services(vs) == ["champ-predictor", "chall-predictor"]


class TestWholeDeployments:
    def test_should_render_every_manifest_schema_valid_with_example_inputs(self):
        manifests = kb.mirror_manifests(
            model_name="wachttijden",
            namespace=NS,
            image="img:1",
            champion_uri=URI,
            challenger_uri="gs://b/other",
            champion_version="3",
            challenger_version="4",
        )
        assert list(manifests) == [
            "servingruntime.yaml",
            "inferenceservice-champion.yaml",
            "inferenceservice-challenger.yaml",
            "inferencegraph-mirror.yaml",
            "gateway-mirror.yaml",
            "virtualservice-mirror.yaml",
        ]
        for manifest in manifests.values():
            validate(manifest)
        challenger = manifests["inferenceservice-challenger.yaml"]
        assert challenger["metadata"]["name"] == "wachttijden-challenger"
        assert challenger["metadata"]["labels"]["sluice.io/model-version"] == "4"
        # The Istio mirror keeps the path, so the challenger answers as the champion's model name.
        assert challenger["spec"]["predictor"]["model"]["args"] == ["--model_name=wachttijden"]
        assert [yaml.safe_load(kb.to_yaml(m)) for m in manifests.values()] == list(manifests.values())

    def test_should_build_the_mirroring_objects_once_for_the_cluster_and_the_router(self):
        both = kb.mirror_manifests(
            model_name="wachttijden", namespace=NS, image="img:1", champion_uri=URI, challenger_uri=URI,
            mirror_percent=30,
        )
        routing = kb.mirror_routing(model_name="wachttijden", namespace=NS, mirror_percent=30)
        assert list(both)[-3:] == list(routing)
        assert {name: both[name] for name in routing} == routing


PURE_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import tasks.deploy.manifests
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_the_builders_import_no_io_registry_process_or_cluster_code():
    loaded = subprocess.run(
        [sys.executable, "-c", PURE_CHECK, str(REPO_ROOT / "src")], capture_output=True, text=True, check=True
    ).stdout.split()
    project = sorted(m for m in loaded if m.startswith(("tasks", "models")))
    assert project == ["tasks", "tasks.deploy", "tasks.deploy.manifests", "tasks.deploy.names", "tasks.deploy.storage"]
    assert not [m for m in loaded if m.startswith(("kubernetes", "mlflow", "yaml"))]
