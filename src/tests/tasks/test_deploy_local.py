"""Tests of the local deploy target with real processes: MLflow registry, model servers, router, pid files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks import deploy
from tasks.config import Settings
from tasks.deploy import processes as local_services
from tests.support.processes import REPO_ROOT, free_port

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
MODEL_NAME = "deploytest"
HAS_SERVER = (REPO_ROOT / "src" / "serving" / "model_server.py").exists() and SERVING_PYTHON.exists()
HAS_ROUTER = (REPO_ROOT / "src" / "serving" / "router.py").exists()


# --------------------------------------------------------------------------- detached services


def sleeper(run_dir: Path, name: str, script: str = "sleep 60") -> local_services.Service:
    return local_services.start(run_dir, name, ["sh", "-c", script], port=None, meta={"kind": "test"})


def alive(pid: int) -> bool:
    stat = local_services._proc_stat(pid)
    return stat is not None and stat[0] != "Z"


class TestLocalServices:
    def test_should_start_detached_record_and_stop_a_service(self, tmp_path):
        service = sleeper(tmp_path, "svc")
        try:
            assert os.getpgid(service.pid) == service.pid  # its own session and group
            assert os.getsid(service.pid) == service.pid
            state = json.loads((tmp_path / "svc.json").read_text())
            assert state["pid"] == service.pid and state["cmd"] == ["sh", "-c", "sleep 60"]
            assert local_services.status(tmp_path, "svc") == service
        finally:
            assert local_services.stop(tmp_path, "svc", timeout=5) is True
        assert not alive(service.pid)
        assert not (tmp_path / "svc.json").exists()
        assert local_services.stop(tmp_path, "svc") is False

    def test_should_stop_the_whole_process_group(self, tmp_path):
        child_file = tmp_path / "child.pid"
        sleeper(tmp_path, "svc", f"sleep 60 & echo $! > {child_file}; wait")
        deadline = time.monotonic() + 5
        while not child_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(child_file.read_text())
        local_services.stop(tmp_path, "svc", timeout=5)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)

    def test_should_never_signal_a_pid_that_is_no_longer_ours(self, tmp_path):
        stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
        try:
            # A state file naming a live pid with another start time: a recycled pid.
            record = local_services.Service(
                name="old", pid=stranger.pid, start_ticks=1, cmd=["x"], port=None, log="", started_at=0
            )
            (tmp_path / "old.json").write_text(json.dumps(record.__dict__))
            assert local_services.status(tmp_path, "old") is None
            assert not (tmp_path / "old.json").exists()  # stale state is cleaned up
            (tmp_path / "old.json").write_text(json.dumps(record.__dict__))
            assert local_services.stop(tmp_path, "old") is False
            assert stranger.poll() is None  # still running: it was never signalled
        finally:
            stranger.kill()
            stranger.wait()

    def test_should_refuse_to_start_a_second_copy(self, tmp_path):
        sleeper(tmp_path, "svc")
        try:
            with pytest.raises(RuntimeError, match="already running"):
                sleeper(tmp_path, "svc")
        finally:
            local_services.stop_all(tmp_path)

    def test_should_report_and_stop_all_from_the_command_line(self, tmp_path):
        one, two = sleeper(tmp_path, "router"), sleeper(tmp_path, "model")
        run = [sys.executable, "-m", "tasks.deploy.processes"]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
        status = subprocess.run(
            [*run, "status", "--run-dir", str(tmp_path), "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        report = json.loads(status.stdout)
        assert report["router"]["running"] and report["router"]["pid"] == one.pid
        assert report["model"]["kind"] == "test"
        stopped = subprocess.run(
            [*run, "stop-all", "--run-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert "stopped: router, model" in stopped.stdout
        assert not alive(one.pid) and not alive(two.pid)
        text = subprocess.run(
            [*run, "status", "--run-dir", str(tmp_path)], capture_output=True, text=True, env=env, check=True
        )
        assert "no local services" in text.stdout


# --------------------------------------------------------------------------- deploy, local target


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
        cmd = deploy.model_server_command(settings, "7", 18081)
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

    def test_should_write_the_builders_specs_and_resolve_their_services(self, tmp_path):
        settings = local_settings(tmp_path)
        specs = deploy.write_local_mirror_specs(settings, 40)
        graph = yaml.safe_load(specs["inferencegraph"].read_text())
        assert graph["kind"] == "InferenceGraph"
        vs = yaml.safe_load(specs["virtualservice"].read_text())
        assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 40.0}
        cmd = deploy.router_command(settings, specs["virtualservice"], "http://c:1", "http://x:2", port=9)
        assert cmd[cmd.index("--spec") + 1] == str(specs["virtualservice"])
        resolves = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--resolve"]
        assert resolves == [
            f"{MODEL_NAME}-predictor=http://c:1",
            f"{MODEL_NAME}-challenger-predictor=http://x:2",
        ]
        cmd = deploy.router_command(settings, specs["inferencegraph"], "http://c:1", "http://x:2")
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
            with pytest.raises(RuntimeError, match="is taken by a process that is not the recorded"):
                deploy.start_model_local(settings, {"version": "1"})

    def test_should_fail_with_the_log_when_the_server_exits(self, tmp_path):
        # The pipelines venv has no kserve: the server dies at import, and the wait must say so.
        settings = local_settings(tmp_path, local_serving_python=sys.executable)
        deployment = deploy.start_model(settings, {"version": "1"})
        with pytest.raises(RuntimeError, match="(?s)exited while starting.*Error"):
            deploy.wait_until_ready(settings, deployment)
        local_services.stop_all(tmp_path / "run")

    def test_should_reject_an_unknown_target(self, tmp_path):
        with pytest.raises(ValueError, match="deploy_target"):
            deploy.start_model(local_settings(tmp_path, deploy_target="docker"), {"version": "1"})


@pytest.fixture(scope="module")
def registry(mlflow_server, pytestconfig) -> str:
    """Two small trained models registered as versions 1 (champion) and 2 (challenger)."""
    if not HAS_SERVER:
        pytest.skip("the model server (src/serving/model_server.py, .venv-serving) is not available")
    import mlflow
    from mlflow import MlflowClient

    from tests.serving.servers import model_sources_digest, small_model

    # The same cache as the serving tests: the small models are trained once per code change.
    cache = Path(pytestconfig.cache.mkdir(f"sluice-small-models-{model_sources_digest()}"))
    client = MlflowClient(mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("deploy-tests")
    for seed, alias in ((1, "champion"), (2, "challenger")):
        model_dir = small_model(cache, seed)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), "model")
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL_NAME)
        client.set_registered_model_alias(MODEL_NAME, alias, version.version)
    mlflow.set_tracking_uri(None)
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


@pytest.mark.slow
class TestDeployModelLocal:
    def test_should_serve_resolve_replace_and_keep_idempotently(self, registry, tmp_path):
        settings = local_settings(tmp_path, registry)
        run_dir = tmp_path / "run"
        try:
            first = deploy.deploy_model(settings, "champion", body=sample_body())
            assert first["model"]["version"] == "1"
            (service,) = first["services"]
            assert service["started"] and service["version"] == "1"
            assert service["url"] == f"http://127.0.0.1:{settings.local_inference_port}"
            assert len(first["predictions"]["model"]) == 3

            # The same version again: the running server is left alone.
            again = deploy.deploy_model(settings, "1", body=sample_body())
            assert again["services"][0]["started"] is False
            assert again["services"][0]["pid"] == service["pid"]

            # Another version: the old process group is stopped and a new server answers.
            second = deploy.deploy_model(settings, "challenger", body=sample_body())
            replaced = second["services"][0]
            assert replaced["started"] and replaced["version"] == "2" and replaced["pid"] != service["pid"]
            assert not alive(service["pid"])
            assert second["predictions"]["model"] != first["predictions"]["model"]
            assert local_services.status(run_dir, "model").meta["version"] == "2"
        finally:
            local_services.stop_all(run_dir)
        assert local_services.names(run_dir) == []

    @pytest.mark.skipif(not HAS_ROUTER, reason="the router (src/serving/router.py) is not there yet")
    def test_should_mirror_to_the_challenger_through_the_router(self, registry, tmp_path):
        settings = local_settings(tmp_path, registry)
        run_dir = tmp_path / "run"
        try:
            result = deploy.deploy_traffic_mirroring(settings, mirror_percent=100, body=sample_body())
            names = [s["name"] for s in result["services"]]
            assert names == ["model", "challenger", "router"]
            assert result["urls"]["router"] == f"http://127.0.0.1:{settings.local_router_port}"
            assert result["urls"]["challenger"] == f"http://127.0.0.1:{settings.local_inference_port + 2}"
            assert len(result["predictions"]["router"]) == 3
            assert len(result["predictions"]["challenger"]) == 3
            # Mirrored predictions are logged by the router; give the fire-and-forget copy a moment.
            log = run_dir / "predictions.jsonl"
            deadline = time.monotonic() + 20
            while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert log.read_text().strip()
        finally:
            local_services.stop_all(run_dir)
