"""Detached local services by state file: start, wait, stop whole process groups, a status that keeps stopped ones."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tasks.deploy import processes
from tests.support.processes import REPO_ROOT, free_port

FRONT = processes.Role("front", stop_order=-1)


def sleeper(run_dir: Path, name: str, script: str = "sleep 60", **kwargs) -> processes.Service:
    return processes.start(run_dir, name, ["sh", "-c", script], meta={"kind": "test"}, **kwargs)


def deploy_local(local_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`./deploy-local.sh ARGS` against a throw-away SLUICE_LOCAL_DIR."""
    env = {**os.environ, "SLUICE_LOCAL_DIR": str(local_dir)}
    return subprocess.run(
        [str(REPO_ROOT / "deploy-local.sh"), *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )


def wait_for_exit(service: processes.Service, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while processes.is_running(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.is_running(service)


def wait_for_file(path: Path, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class TestStartAndStop:
    def test_should_start_detached_record_and_stop_a_service(self, tmp_path):
        service = sleeper(tmp_path, "svc")
        try:
            assert os.getpgid(service.pid) == service.pid  # its own session and group
            assert os.getsid(service.pid) == service.pid
            state = json.loads((tmp_path / "svc.json").read_text())
            assert state["pid"] == service.pid and state["cmd"] == ["sh", "-c", "sleep 60"]
            assert processes.running(tmp_path, "svc") == service
        finally:
            assert processes.stop(tmp_path, "svc", timeout=5) is True
        assert not processes.alive(service.pid)
        assert not (tmp_path / "svc.json").exists()
        assert processes.stop(tmp_path, "svc") is False

    def test_should_stop_the_whole_process_group(self, tmp_path):
        child_file = tmp_path / "child.pid"
        sleeper(tmp_path, "svc", f"sleep 60 & echo $! > {child_file}; wait")
        wait_for_file(child_file)
        child = int(child_file.read_text())
        processes.stop(tmp_path, "svc", timeout=5)
        deadline = time.monotonic() + 5
        while processes.alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes.alive(child)

    def test_should_never_signal_a_pid_that_is_no_longer_ours(self, tmp_path):
        stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
        try:
            # A state file naming a live pid with another start time: a recycled pid.
            record = {"name": "old", "pid": stranger.pid, "start_ticks": 1, "cmd": ["x"], "port": None,
                      "log": str(tmp_path / "old.log"), "started_at": 0}  # written before roles existed
            (tmp_path / "old.json").write_text(json.dumps(record))
            assert processes.running(tmp_path, "old") is None
            (state,) = processes.status(tmp_path)
            assert (state.service.name, state.running) == ("old", False)
            assert processes.stop(tmp_path, "old") is False
            assert stranger.poll() is None  # still running: it was never signalled
            assert processes.status(tmp_path) == []
        finally:
            stranger.kill()
            stranger.wait()

    def test_should_refuse_to_start_a_second_copy(self, tmp_path):
        sleeper(tmp_path, "svc")
        try:
            with pytest.raises(RuntimeError, match="already running"):
                sleeper(tmp_path, "svc")
        finally:
            processes.stop_all(tmp_path)

    def test_should_stop_in_the_order_the_roles_ask_for(self, tmp_path):
        log = tmp_path / "stops.log"
        # Each service notes when it is stopped; the front one must go first whatever its name.
        for name, role in (("a-server", processes.Role("server")), ("z-front", FRONT)):
            script = f"trap 'echo {name} >> {log}; exit 0' TERM; touch {tmp_path / name}.trapped; sleep 60 & wait"
            sleeper(tmp_path, name, script, role=role)
            wait_for_file(tmp_path / f"{name}.trapped")
        assert processes.stop_all(tmp_path) == ["z-front", "a-server"]
        assert log.read_text().split() == ["z-front", "a-server"]


class TestEnsure:
    def test_should_keep_the_same_service_and_replace_a_changed_one(self, tmp_path):
        first, started = processes.ensure(tmp_path, "svc", ["sleep", "60"], meta={"version": "1"})
        try:
            assert started
            again, started = processes.ensure(tmp_path, "svc", ["sleep", "60"], meta={"version": "1"})
            assert not started and again.pid == first.pid
            replaced, started = processes.ensure(tmp_path, "svc", ["sleep", "60"], meta={"version": "2"})
            assert started and replaced.pid != first.pid and not processes.alive(first.pid)
        finally:
            processes.stop_all(tmp_path)

    def test_should_refuse_a_port_that_someone_else_holds(self, tmp_path):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            with pytest.raises(processes.PortTaken, match="is taken by a process that is not the recorded 'svc'"):
                processes.ensure(tmp_path, "svc", ["sleep", "60"], port=port)
        assert processes.names(tmp_path) == []


class TestWaitUntilReady:
    def test_should_fail_with_the_exit_code_and_the_log_when_the_service_dies(self, tmp_path):
        service = sleeper(tmp_path, "svc", "echo 'Error: no model' >&2; exit 4")
        expected = r"(?s)exited while starting \(exit code 4\).*Error: no model"
        with pytest.raises(processes.ServiceExited, match=expected):
            processes.wait_until_ready(service, f"http://127.0.0.1:{free_port()}/", timeout=10)

    def test_should_time_out_with_the_log(self, tmp_path):
        service = sleeper(tmp_path, "svc", "echo waiting; sleep 60")
        try:
            with pytest.raises(TimeoutError, match=r"(?s)not ready at .* after 1s.*waiting"):
                processes.wait_until_ready(service, f"http://127.0.0.1:{free_port()}/", timeout=1, poll_interval=0.1)
        finally:
            processes.stop_all(tmp_path)


class TestStatus:
    def test_should_list_a_dead_service_as_stopped_with_exit_code_and_log_until_down(self, tmp_path):
        run_dir = tmp_path / "run"
        service = processes.start(run_dir, "svc", ["sh", "-c", "echo dying; exit 3"])
        wait_for_exit(service)
        for _ in range(2):  # the first status used to forget it
            out = deploy_local(tmp_path, "status").stdout
            (line,) = [line for line in out.splitlines() if line.startswith("svc ")]
            assert "stopped" in line
            assert "exit=3" in line
            assert str(run_dir / "svc.log") in line
        deploy_local(tmp_path, "down")
        assert "svc" not in deploy_local(tmp_path, "status").stdout

    def test_should_forget_the_exit_code_when_restarted(self, tmp_path):
        wait_for_exit(processes.start(tmp_path, "svc", ["sh", "-c", "exit 3"]))
        assert processes.exit_code(tmp_path, "svc") == 3
        service = sleeper(tmp_path, "svc")
        try:
            (state,) = processes.status(tmp_path)
            assert state.running and state.exit_code is None and state.service.pid == service.pid
        finally:
            processes.stop_all(tmp_path)

    def test_should_report_and_stop_all_from_the_command_line(self, tmp_path):
        run_dir = tmp_path / "run"
        front, server = sleeper(run_dir, "router", role=FRONT), sleeper(run_dir, "model")
        lines = deploy_local(tmp_path, "status").stdout.splitlines()
        assert any(line.startswith("router ") and "running" in line and f"pid={front.pid}" in line for line in lines)
        assert any(line.startswith("model ") and "kind=test" in line for line in lines)
        assert "stopped: router, model" in deploy_local(tmp_path, "down").stdout
        assert not processes.alive(front.pid) and not processes.alive(server.pid)
        assert "nothing is running" in deploy_local(tmp_path, "status").stdout
