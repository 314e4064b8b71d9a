"""A model server that cannot get its model says why at once and exits, instead of retrying for minutes."""

from __future__ import annotations

import os
import subprocess
import time

from tests.serving.servers import SERVING_ENV, SERVING_PYTHON
from tests.support.processes import REPO_ROOT, free_port, start_process, stop_process

# Importing KServe and MLflow takes a few seconds (more on a loaded machine); MLflow's own client
# retried a refused connection for about four minutes before it gave up.
EXIT_WITHIN_S = 30


def test_mlflow_down_at_start_exits_non_zero_naming_the_tracking_url(tmp_path):
    tracking_uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    log_path = tmp_path / "server.log"
    cmd = [
        str(SERVING_PYTHON), "-m", "serving.model_server",
        "--model-uri", "models:/wachttijden@champion", "--http-port", str(free_port()),
    ]
    env = {**SERVING_ENV, "MLFLOW_TRACKING_URI": tracking_uri}
    started = time.monotonic()
    proc = start_process(cmd, log_path=log_path, env=env, cwd=REPO_ROOT)
    try:
        returncode = proc.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        stop_process(proc)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert returncode is not None, f"still running after {EXIT_WITHIN_S} s:\n{output[-2000:]}"
    # EX_CONFIG: a configuration problem that a restart cannot fix (the local supervisor does not retry it).
    assert returncode == os.EX_CONFIG
    assert tracking_uri in output and "MLflow tracking server" in output, output[-2000:]
    assert time.monotonic() - started < EXIT_WITHIN_S
