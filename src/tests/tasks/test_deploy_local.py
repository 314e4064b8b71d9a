"""The local deploy target with real processes: MLflow registry, model servers, router, state files."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks.config import Settings
from tasks.deploy import local, processes, steps
from tasks.deploy.manifests import mirror_routing
from tasks.registry import ResolvedVersion
from tests.support.processes import REPO_ROOT, free_port

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
MODEL_NAME = "deploytest"


def version(number: str) -> ResolvedVersion:
    return ResolvedVersion(name=MODEL_NAME, ref=number, version=number, run_id="", download_uri="unused")


def local_settings(tmp_path: Path, tracking_uri: str = "http://127.0.0.1:1", **overrides) -> Settings:
    values = {
        "mlflow_tracking_uri": tracking_uri,
        "model_name": MODEL_NAME,
        "deploy_target": "local",
        "local_run_dir": str(tmp_path / "run"),
        "local_serving_python": str(SERVING_PYTHON),
        "local_inference_port": free_port(),
        "local_router_port": free_port(),
    }
    return Settings(**{**values, **overrides})


class TestLocalCommands:
    def test_should_serve_a_pinned_registry_version_on_loopback(self, tmp_path):
        settings = local_settings(tmp_path, local_inference_port=18081)
        cmd = local.model_server_command(settings, "7", 18081)
        assert cmd[1:] == [
            "-m",
            "serving.model_server",
            "--model-uri",
            f"models:/{MODEL_NAME}/7",
            "--model-name",
            MODEL_NAME,
            "--model-version",
            "7",
            "--http-port",
            "18081",
            "--host",
            "127.0.0.1",
            "--prediction-log",
            str(tmp_path / "run" / "predictions.jsonl"),
        ]

    def test_should_run_the_builders_mirroring_objects_and_resolve_their_services(self, tmp_path):
        settings = local_settings(tmp_path)
        specs = local.write_mirror_specs(settings, 40)
        routing = mirror_routing(model_name=MODEL_NAME, namespace=settings.kserve_namespace, mirror_percent=40)
        # The very objects the cluster gets, not a second construction of them.
        assert yaml.safe_load(specs["inferencegraph"].read_text()) == routing["inferencegraph-mirror.yaml"]
        assert yaml.safe_load(specs["virtualservice"].read_text()) == routing["virtualservice-mirror.yaml"]
        cmd = local.router_command(settings, specs["virtualservice"], "http://c:1", "http://x:2", port=9)
        assert cmd[cmd.index("--spec") + 1] == str(specs["virtualservice"])
        resolves = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--resolve"]
        assert resolves == [
            f"{MODEL_NAME}-predictor=http://c:1",
            f"{MODEL_NAME}-challenger-predictor=http://x:2",
        ]
        cmd = local.router_command(settings, specs["inferencegraph"], "http://c:1", "http://x:2")
        resolves = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--resolve"]
        assert resolves == [f"{MODEL_NAME}-challenger=http://x:2", f"{MODEL_NAME}=http://c:1"]
        assert cmd[cmd.index("--prediction-log") + 1] == str(tmp_path / "run" / "predictions.jsonl")
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1"

    def test_should_refuse_a_port_that_someone_else_holds(self, tmp_path):
        import socket

        settings = local_settings(tmp_path)
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", settings.local_inference_port))
            holder.listen()
            with pytest.raises(processes.PortTaken, match="is taken by a process that is not the recorded"):
                local.serve_model(settings, version("1"))

    def test_should_fail_with_the_log_when_the_server_exits(self, tmp_path):
        # The pipelines venv has no kserve: the server dies at import, and the wait must say so.
        settings = local_settings(tmp_path, local_serving_python=sys.executable)
        try:
            served = steps.serve_model(settings, version("1").to_dict())
            with pytest.raises(RuntimeError, match="(?s)exited while starting.*Error"):
                steps.wait_until_ready(settings, served)
            # The dead server stays listed with what it left, until it is stopped or replaced.
            (state,) = processes.status(tmp_path / "run")
            assert state.service.role == local.CHAMPION and not state.running and state.exit_code == 1
        finally:
            processes.stop_all(tmp_path / "run")

    def test_should_record_the_role_that_names_each_service(self, tmp_path):
        settings = local_settings(tmp_path, local_serving_python=sys.executable)
        try:
            served = local.serve_mirroring(settings, version("1"), version("2"), 50)
            assert [s["name"] for s in served.services] == ["model", "challenger", "router"]
            roles = {name: processes.load(tmp_path / "run", name).role for name in ("model", "challenger", "router")}
            assert roles == {"model": local.CHAMPION, "challenger": local.CHALLENGER, "router": local.ROUTER}
            # Stopped before the servers it forwards to.
            assert local.ROUTER.stop_order < local.CHAMPION.stop_order == local.CHALLENGER.stop_order
        finally:
            processes.stop_all(tmp_path / "run")

    def test_should_reject_an_unknown_target(self, tmp_path):
        with pytest.raises(ValueError, match="deploy_target"):
            steps.serve_model(local_settings(tmp_path, deploy_target="docker"), version("1").to_dict())


@pytest.fixture(scope="module")
def registry(mlflow_server, pytestconfig) -> str:
    """Two small trained models registered as versions 1 (champion) and 2 (challenger).

    Only MlflowClient calls on the given server: mlflow's fluent API would leave a tracking URI
    and an active experiment (MLFLOW_EXPERIMENT_ID in os.environ) behind for later tests.
    """
    if not SERVING_PYTHON.exists():
        pytest.skip("the serving environment .venv-serving is missing: run scripts/setup.sh dev")
    from mlflow import MlflowClient

    from tests.serving.servers import model_sources_digest, small_model

    # The same cache as the serving tests: the small models are trained once per code change.
    cache = Path(pytestconfig.cache.mkdir(f"sluice-small-models-{model_sources_digest()}"))
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment(f"deploy-tests-{time.time_ns()}")
    client.create_registered_model(MODEL_NAME)
    for seed, alias in ((1, "champion"), (2, "challenger")):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(small_model(cache, seed)), "model")
        client.set_terminated(run.info.run_id)
        registered = client.create_model_version(MODEL_NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
        client.set_registered_model_alias(MODEL_NAME, alias, registered.version)
    return mlflow_server


def sample_body() -> dict:
    from tests.serving.small_model import CATEGORIES

    return {
        "inputs": [
            {
                "name": name,
                "shape": [3],
                "datatype": "BYTES",
                "data": [values[i % len(values)] for i in range(3)],
            }
            for name, values in CATEGORIES.items()
        ]
    }


def test_should_fail_at_once_naming_the_tracking_server_when_it_is_down(tmp_path, mlflow_client_env):
    from tasks.registry import TrackingServerUnavailable

    settings = local_settings(tmp_path, f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(TrackingServerUnavailable, match=f"at {settings.mlflow_tracking_uri} is unreachable"):
        steps.deploy_model(settings, "champion")
    assert time.monotonic() - start < 15
    assert processes.names(tmp_path / "run") == []


@pytest.mark.slow
class TestDeployModelLocal:
    def test_should_serve_resolve_replace_and_keep_idempotently(self, registry, tmp_path, mlflow_client_env):
        settings = local_settings(tmp_path, registry)
        run_dir = tmp_path / "run"
        try:
            first = steps.deploy_model(settings, "champion", body=sample_body())
            assert first.versions["champion"]["version"] == "1"
            (service,) = first.services
            assert service["started"] and service["version"] == "1" and service["role"] == "model"
            assert service["url"] == f"http://127.0.0.1:{settings.local_inference_port}"
            assert len(first.predictions["model"]) == 3

            # The same version again: the running server is left alone.
            again = steps.deploy_model(settings, "1", body=sample_body())
            assert again.services[0]["started"] is False
            assert again.services[0]["pid"] == service["pid"]

            # Another version: the old process group is stopped and a new server answers.
            second = steps.deploy_model(settings, "challenger", body=sample_body())
            replaced = second.services[0]
            assert replaced["started"] and replaced["version"] == "2" and replaced["pid"] != service["pid"]
            assert not processes.alive(service["pid"])
            assert second.predictions["model"] != first.predictions["model"]
            assert processes.running(run_dir, "model").meta["version"] == "2"
        finally:
            processes.stop_all(run_dir)
        assert processes.names(run_dir) == []

    def test_a_crashed_model_server_is_restarted_by_its_supervisor(self, registry, tmp_path, mlflow_client_env):
        import os
        import signal

        from tasks.deploy import supervise
        from tasks.deploy.smoke import smoke_predict

        settings = local_settings(tmp_path, registry)
        run_dir = tmp_path / "run"
        try:
            first = steps.deploy_model(settings, "champion", body=sample_body())
            server = supervise.read_state(run_dir, "model").child_pid
            os.kill(server, signal.SIGKILL)
            url = f"{first.urls['model']}/v2/models/{MODEL_NAME}/ready"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = supervise.read_state(run_dir, "model")
                if state.child_pid != server and processes.http_status(url) == 200:
                    break
                time.sleep(0.5)
            assert processes.http_status(url) == 200
            # The same recorded service (its supervisor) came through; no pipeline ran again.
            (status,) = processes.status(run_dir)
            assert status.running and status.service.pid == first.services[0]["pid"]
            assert status.restarts == 1 and "killed by SIGKILL" in status.describe()
            infer = first.urls["model"] + first.entry_path
            assert len(smoke_predict(infer, sample_body())) == 3
            assert "exited with killed by SIGKILL; restart 1" in Path(status.service.log).read_text()
        finally:
            processes.stop_all(run_dir)
        assert processes.names(run_dir) == []

    def test_should_mirror_to_the_challenger_through_the_router(self, registry, tmp_path, mlflow_client_env):
        settings = local_settings(tmp_path, registry)
        run_dir = tmp_path / "run"
        try:
            result = steps.deploy_traffic_mirroring(settings, mirror_percent=100, body=sample_body())
            assert [s["name"] for s in result.services] == ["model", "challenger", "router"]
            assert result.urls["router"] == f"http://127.0.0.1:{settings.local_router_port}"
            assert result.urls["challenger"] == f"http://127.0.0.1:{settings.local_inference_port + 2}"
            assert len(result.predictions["router"]) == 3
            assert len(result.predictions["challenger"]) == 3
            # Mirrored predictions are logged by the router; give the fire-and-forget copy a moment.
            log = run_dir / "predictions.jsonl"
            deadline = time.monotonic() + 20
            while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert log.read_text().strip()
        finally:
            stopped = processes.stop_all(run_dir)
        assert stopped == ["router", "challenger", "model"]
