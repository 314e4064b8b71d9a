"""The local supervisor restarts a crashed service with backoff, caps restarts, and logs why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.deploy.supervise import read_state
from tests.support.processes import REPO_ROOT, wait_until

# A child that crashes (exit 1) on its first `crashes` starts, then stays up; it counts starts in a file.
FLAKY_CHILD = """
import pathlib, sys, time
counter = pathlib.Path(sys.argv[1])
starts = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(starts))
if starts <= int(sys.argv[2]):
    sys.exit(1)
time.sleep(120)
"""


def start_supervisor(tmp_path: Path, child: list[str], *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "svc.log", "ab")  # noqa: SIM115 - closed by the test's process end
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.deploy.supervise", "--name", "svc", "--run-dir", str(tmp_path),
         "--max-backoff-s", "0.3", *extra, "--", *child],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, start_new_session=True,
    )


def stop_group(proc: subprocess.Popen) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=20)


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "svc.log").read_text()


class TestRestarts:
    def test_a_crashing_child_is_restarted_until_it_stays_up(self, tmp_path):
        proc = start_supervisor(tmp_path, [sys.executable, "-c", FLAKY_CHILD, str(tmp_path / "n"), "2"])
        try:
            wait_until(lambda: (tmp_path / "n").exists() and (tmp_path / "n").read_text() == "3", timeout=30,
                       what="third start")
            state = read_state(tmp_path, "svc")
            assert state.restarts == 2
            assert "exited with exit code 1; restart 1 in" in log_text(tmp_path)
            assert "restart 2 in" in log_text(tmp_path)
        finally:
            assert stop_group(proc) == 0

    def test_a_killed_child_is_replaced_by_a_new_process(self, tmp_path):
        proc = start_supervisor(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"])
        try:
            wait_until(lambda: read_state(tmp_path, "svc") is not None, timeout=20, what="first child")
            first = read_state(tmp_path, "svc").child_pid
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: read_state(tmp_path, "svc").child_pid != first, timeout=20, what="a new child")
            assert "exited with killed by SIGKILL; restart 1" in log_text(tmp_path)
            assert proc.poll() is None
        finally:
            stop_group(proc)

    def test_stopping_the_group_ends_both_without_a_restart(self, tmp_path):
        proc = start_supervisor(tmp_path, [sys.executable, "-c", "import time; time.sleep(120)"])
        wait_until(lambda: read_state(tmp_path, "svc") is not None, timeout=20, what="first child")
        child = read_state(tmp_path, "svc").child_pid
        assert stop_group(proc) == 0
        assert read_state(tmp_path, "svc").restarts == 0
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)


class TestGivingUp:
    def test_restarts_are_capped_within_the_window(self, tmp_path):
        proc = start_supervisor(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"], "--max-restarts", "2")
        assert proc.wait(timeout=30) == 3
        state = read_state(tmp_path, "svc")
        assert state.gave_up and state.restarts == 2 and state.last_exit == 3
        assert "3 crashes within 600s (more than --max-restarts 2): giving up" in log_text(tmp_path)

    @pytest.mark.parametrize("code", [2, 78])
    def test_a_configuration_error_is_not_retried(self, tmp_path, code):
        started = time.monotonic()
        proc = start_supervisor(tmp_path, [sys.executable, "-c", f"raise SystemExit({code})"])
        assert proc.wait(timeout=20) == code
        assert time.monotonic() - started < 15
        state = read_state(tmp_path, "svc")
        assert state.restarts == 0 and state.gave_up
        assert f"exited with exit code {code}, which a restart cannot fix" in log_text(tmp_path)
