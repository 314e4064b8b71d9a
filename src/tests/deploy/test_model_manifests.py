"""deploy/model manifests, the model deploy and prediction scripts, and the serving image, checked offline."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tasks.deploy import render
from tasks.deploy.versions import read_versions
from tests.deploy.test_checkov import CHECKOV_ENV
from tests.support.processes import REPO_ROOT, free_port

MODEL_DIR = REPO_ROOT / "deploy" / "model"
SCRIPTS = [
    REPO_ROOT / "deploy-model.sh",
    REPO_ROOT / "deploy-sequence.sh",
    REPO_ROOT / "scripts" / "perform-prediction.sh",
    REPO_ROOT / "scripts" / "perform-prediction-sequence.sh",
]
SHARED = Path(os.environ.get("SLUICE_SHARED_DIR", REPO_ROOT.parent / "shared"))
CHECKED_IN = sorted(p.name for p in MODEL_DIR.glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def validate(manifest: dict) -> None:
    group, version = manifest["apiVersion"].split("/")
    path = SHARED / "crd-schemas" / group / f"{manifest['kind'].lower()}_{version}.json"
    if not path.exists():
        pytest.skip(f"CRD schema {path} not found (set SLUICE_SHARED_DIR to the shared folder)")
    schema = json.loads(path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(manifest)


def offline_env(**extra: str) -> dict[str, str]:
    """No cluster and no MLflow: a kubeconfig that does not exist, no tracking URI."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SLUICE_SERVING_IMAGE")}
    return {**env, "KUBECONFIG": "/nonexistent/kubeconfig", **extra}


def recorded_renders(render_dir: Path) -> list[list[str]]:
    """The `python -m tasks.deploy.render` command lines a dry run recorded in commands.sh."""
    lines = (render_dir / "commands.sh").read_text().splitlines()
    return [shlex.split(line) for line in lines if "tasks.deploy.render" in line]


def rerender(command: list[str], out: Path) -> dict[str, dict]:
    """Run a recorded deploy command without --apply into `out`: file name -> manifest."""
    module = command.index("-m")
    args = [a for a in command[module + 3 :] if a != "--apply"]
    subprocess.run(
        [sys.executable, "-m", "tasks.deploy.render", str(out), *args],
        cwd=REPO_ROOT, env=offline_env(PYTHONPATH="src"), check=True, capture_output=True, timeout=120,
    )
    return {p.name: load(p) for p in out.glob("*.yaml")}


class TestCheckedInManifests:
    def test_should_hold_every_manifest(self):
        assert CHECKED_IN == [
            "gateway-mirror.yaml",
            "inferencegraph-mirror.yaml",
            "inferenceservice-challenger.yaml",
            "inferenceservice-champion.yaml",
            "servingruntime.yaml",
            "virtualservice-mirror.yaml",
        ]

    def test_should_equal_what_the_builders_render_today(self, tmp_path, monkeypatch):
        monkeypatch.delenv("SLUICE_SERVING_IMAGE", raising=False)
        assert render.main([str(tmp_path)]) == 0
        for name in CHECKED_IN:
            assert (MODEL_DIR / name).read_text() == (tmp_path / name).read_text(), (
                f"deploy/model/{name} is stale: re-render it with "
                "`PYTHONPATH=src python -m tasks.deploy.render deploy/model`"
            )

    @pytest.mark.parametrize("name", CHECKED_IN)
    def test_should_validate_against_the_crd_schema(self, name):
        validate(load(MODEL_DIR / name))

    def test_should_use_the_pinned_serving_image(self):
        versions = read_versions()
        (container,) = load(MODEL_DIR / "servingruntime.yaml")["spec"]["containers"]
        assert container["image"] == f"{versions['SERVING_IMAGE_REPOSITORY']}:{versions['SERVING_IMAGE_TAG']}"

    def test_should_be_accepted_by_kubernetes_validate_strict(self):
        # Every object here is a custom resource (kubernetes-validate only warns about those);
        # this still proves each file is one well-formed Kubernetes object.
        tool = REPO_ROOT / ".venv" / "bin" / "kubernetes-validate"
        if not tool.exists():
            pytest.skip("kubernetes-validate is not installed in .venv")
        result = subprocess.run(
            [str(tool), "-k", "1.33.0", "--strict", *map(str, sorted(MODEL_DIR.glob("*.yaml")))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ERROR" not in result.stdout


class TestImageModelManifests:
    """The xray InferenceService and its mirroring: the same builders and the one ServingRuntime, rendered by the
    command deploy-model.sh runs (SLUICE_MODEL_NAME=xray), strict against the CRD schemas."""

    @pytest.fixture(scope="class")
    def xray(self, tmp_path_factory) -> dict[str, dict]:
        out = tmp_path_factory.mktemp("xray-manifests")
        assert render.main([str(out), "--model-name", "xray", "--image", "registry.example/sluice-serving:1",
                            "--champion-uri", "s3://sluice-mlflow/artifacts/2/models/m-xray/artifacts/",
                            "--challenger-uri", "s3://sluice-mlflow/artifacts/2/models/m-xray-2/artifacts/"]) == 0
        return {p.name: load(p) for p in out.glob("*.yaml")}

    def test_should_render_every_object_the_tabular_model_has(self, xray):
        assert sorted(xray) == CHECKED_IN

    @pytest.mark.parametrize("name", CHECKED_IN)
    def test_should_validate_against_the_crd_schema(self, xray, name):
        validate(xray[name])

    def test_should_serve_it_with_the_same_runtime_and_no_gpu(self, xray):
        tabular = load(MODEL_DIR / "servingruntime.yaml")
        assert xray["servingruntime.yaml"]["spec"] == {
            **tabular["spec"], "containers": [{**tabular["spec"]["containers"][0],
                                               "image": "registry.example/sluice-serving:1"}]}
        champion = xray["inferenceservice-champion.yaml"]
        assert champion["metadata"]["name"] == "xray"
        model = champion["spec"]["predictor"]["model"]
        assert model["runtime"] == "sluice-mlflow" and "nvidia.com/gpu" not in model["resources"]["limits"]
        assert xray["inferenceservice-challenger.yaml"]["spec"]["predictor"]["model"]["args"] == ["--model_name=xray"]

    def test_should_mirror_the_xray_champion_to_its_challenger(self, xray):
        steps = xray["inferencegraph-mirror.yaml"]["spec"]["nodes"]["root"]["steps"]
        assert [s["serviceName"] for s in steps] == ["xray-challenger", "xray"]
        http = xray["virtualservice-mirror.yaml"]["spec"]["http"][0]
        assert http["route"][0]["destination"]["host"] == "xray-predictor.models.svc.cluster.local"
        assert http["mirror"]["host"] == "xray-challenger-predictor.models.svc.cluster.local"
        assert xray["virtualservice-mirror.yaml"]["spec"]["hosts"] == ["xray-shadow-models.sluice.example.com"]


class TestScripts:
    @pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
    def test_should_be_shellcheck_clean(self, script):
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
        result = subprocess.run([shellcheck, "-x", str(script)], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout

    @pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
    def test_should_be_strict_and_executable(self, script):
        assert os.access(script, os.X_OK)
        assert "set -euo pipefail" in script.read_text()

    def test_deploy_model_dry_run_should_render_and_record_without_a_cluster(self, tmp_path):
        out = tmp_path / "render"
        result = subprocess.run(
            [str(REPO_ROOT / "deploy-model.sh"), "--dry-run", "--out", str(out), "--storage-uri", "s3://b/m/3"],
            cwd=REPO_ROOT,
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == [
            "01-servingruntime.yaml",
            "02-inferenceservice-champion.yaml",
            "commands.sh",
        ]
        isvc = load(out / "02-inferenceservice-champion.yaml")
        validate(isvc)
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://b/m/3/"
        assert load(out / "01-servingruntime.yaml") == load(MODEL_DIR / "servingruntime.yaml")
        (deploy,) = recorded_renders(out)
        assert deploy[deploy.index("--which") + 1] == "model" and deploy[-1] == "--apply"
        assert deploy[deploy.index("--champion-uri") + 1] == "s3://b/m/3"
        assert rerender(deploy, tmp_path / "again") == {p.name.split("-", 1)[1]: load(p) for p in out.glob("*.yaml")}

    def test_deploy_model_dry_run_without_mlflow_should_render_the_example(self, tmp_path):
        out = tmp_path / "render"
        result = subprocess.run(
            [str(REPO_ROOT / "deploy-model.sh"), "--dry-run", "--out", str(out)],
            cwd=REPO_ROOT,
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "example storageUri" in result.stderr
        assert load(out / "02-inferenceservice-champion.yaml") == load(MODEL_DIR / "inferenceservice-champion.yaml")

    def test_deploy_model_should_name_what_is_missing_for_a_real_run(self, tmp_path):
        result = subprocess.run(
            [str(REPO_ROOT / "deploy-model.sh")],
            cwd=REPO_ROOT,
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert "preflight failed for deploy-model.sh" in result.stderr
        assert "no current kubectl context" in result.stderr
        assert "MLFLOW_TRACKING_URI is not set" in result.stderr

    def test_deploy_sequence_dry_run_should_render_both_mirroring_designs(self, tmp_path):
        out = tmp_path / "render"
        result = subprocess.run(
            [
                str(REPO_ROOT / "deploy-sequence.sh"),
                "--dry-run",
                "--out",
                str(out),
                "--mirror-percent",
                "10",
                "--champion-uri",
                "s3://b/m/3",
                "--challenger-uri",
                "s3://b/m/4",
            ],
            cwd=REPO_ROOT,
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        files = sorted(p.name for p in out.glob("*.yaml"))
        assert files == [
            "01-servingruntime.yaml",
            "02-inferenceservice-champion.yaml",
            "03-inferenceservice-challenger.yaml",
            "04-inferencegraph-mirror.yaml",
            "05-gateway-mirror.yaml",
            "06-virtualservice-mirror.yaml",
        ]
        for name in files:
            validate(load(out / name))
        assert load(out / "06-virtualservice-mirror.yaml")["spec"]["http"][0]["mirrorPercentage"] == {"value": 10.0}
        # The services are applied (and waited for) before the graph, in Python: see test_deploy_kubernetes.
        (deploy,) = recorded_renders(out)
        assert deploy[deploy.index("--mirror-percent") + 1] == "10" and deploy[-1] == "--apply"
        assert rerender(deploy, tmp_path / "again") == {p.name.split("-", 1)[1]: load(p) for p in out.glob("*.yaml")}

    def test_deploy_sequence_should_refuse_one_uri_without_the_other(self, tmp_path):
        result = subprocess.run(
            [str(REPO_ROOT / "deploy-sequence.sh"), "--dry-run", "--out", str(tmp_path), "--champion-uri", "s3://b/1"],
            cwd=REPO_ROOT,
            env=offline_env(MLFLOW_TRACKING_URI="http://127.0.0.1:1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert "give both --champion-uri and --challenger-uri" in result.stderr


class Endpoint:
    """A loopback V2 endpoint that records the Host header, for the prediction scripts."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "host": self.headers["Host"], "body": body})
                rows = body["inputs"][0]["shape"][0]
                answer = {
                    "model_name": "wachttijden",
                    "outputs": [{"name": "predictions", "datatype": "FP32", "shape": [rows], "data": [4.5] * rows}],
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.server.shutdown()
    server.server.server_close()


def predict(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / script), *args],
        cwd=REPO_ROOT,
        env=offline_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestPredictionScripts:
    def test_should_post_the_sample_rows_to_the_local_model(self, endpoint):
        result = predict("perform-prediction.sh", SLUICE_INFERENCE_PORT=str(endpoint.port))
        assert result.returncode == 0, result.stderr
        (request,) = endpoint.requests
        assert request["path"] == "/v2/models/wachttijden/infer"
        testdata = json.loads((REPO_ROOT / "src" / "tests" / "data" / "testdata.json").read_text())
        assert request["body"] == testdata
        assert "predictions (weeks): [4.5,4.5,4.5]" in result.stdout.replace(", ", ",")

    def test_should_post_to_the_local_router_for_the_sequence(self, endpoint):
        result = predict("perform-prediction-sequence.sh", SLUICE_ROUTER_PORT=str(endpoint.port))
        assert result.returncode == 0, result.stderr
        assert endpoint.requests[0]["path"] == "/v2/models/wachttijden/infer"

    def test_should_send_the_service_host_through_the_ingress(self, endpoint):
        result = predict(
            "perform-prediction.sh", "--cluster", INGRESS_HOST="127.0.0.1", INGRESS_PORT=str(endpoint.port)
        )
        assert result.returncode == 0, result.stderr
        assert endpoint.requests[0]["host"] == "wachttijden-models.sluice.example.com"
        result = predict(
            "perform-prediction-sequence.sh", "--cluster", INGRESS_HOST="127.0.0.1", INGRESS_PORT=str(endpoint.port)
        )
        assert result.returncode == 0, result.stderr
        assert endpoint.requests[1]["host"] == "wachttijden-shadow-models.sluice.example.com"
        result = predict(
            "perform-prediction.sh",
            "--cluster",
            INGRESS_HOST="127.0.0.1",
            INGRESS_PORT=str(endpoint.port),
            SERVICE_HOSTNAME="custom.example.org",
        )
        assert endpoint.requests[2]["host"] == "custom.example.org"

    def test_should_say_clearly_when_the_endpoint_is_down(self):
        result = predict("perform-prediction.sh", SLUICE_INFERENCE_PORT=str(free_port()))
        assert result.returncode == 1
        assert "error: nothing answers at http://127.0.0.1:" in result.stderr
        assert "deploy-local.sh up" in result.stderr

    def test_should_ask_for_the_ingress_address(self):
        result = predict("perform-prediction.sh", "--cluster")
        assert result.returncode == 1
        assert "set INGRESS_HOST" in result.stderr


class TestServingImage:
    DOCKERFILE = REPO_ROOT / "src" / "serving" / "Dockerfile"

    def test_should_pin_the_base_run_as_non_root_and_start_the_model_server(self):
        text = self.DOCKERFILE.read_text()
        (base,) = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        assert base.startswith("python:3.11-slim") and not base.endswith(":latest")
        assert "COPY requirements-serving.txt" in text
        assert "USER 10001" in text
        assert 'ENTRYPOINT ["python", "-m", "serving.model_server"]' in text

    def test_should_copy_only_paths_that_exist_and_that_the_ignore_file_lets_through(self):
        ignore = (self.DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
        allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
        for line in self.DOCKERFILE.read_text().splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (REPO_ROOT / source).exists(), source
                    assert source.rstrip("/") in allowed, f"{source} is excluded from the build context"

    def test_should_pass_checkov(self):
        checkov = REPO_ROOT / ".venv-tools" / "bin" / "checkov"
        if not checkov.exists():
            pytest.skip("checkov (.venv-tools) is not installed")
        result = subprocess.run(
            [
                str(checkov),
                "-f",
                str(self.DOCKERFILE),
                "--framework",
                "dockerfile",
                "--skip-download",
                "--quiet",
                "--compact",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=CHECKOV_ENV,
        )
        assert result.returncode == 0, result.stdout

