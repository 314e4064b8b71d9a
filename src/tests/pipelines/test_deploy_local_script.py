"""The README's main command, for real: ./deploy-local.sh up twice (it converges), a prediction, status, down."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_env(tmp_path_factory):
    """A throw-away platform on free ports, beside any developer platform on the default ones."""
    env = {
        **os.environ,
        "SLUICE_LOCAL_DIR": str(tmp_path_factory.mktemp("platform")),
        "SLUICE_ROWS": "3000",
        "SLUICE_EPOCHS": "1",
        "SLUICE_AIRFLOW_PORT": str(free_port()),
        "SLUICE_MLFLOW_PORT": str(free_port()),
        "SLUICE_INFERENCE_PORT": str(free_port()),
        "SLUICE_ROUTER_PORT": str(free_port()),
    }
    # The test process's own Airflow settings must not leak into the platform's.
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_VAR_")) or k == "AIRFLOW_HOME"]:
        del env[key]
    yield env
    subprocess.run([str(REPO_ROOT / "deploy-local.sh"), "down"], env=env, timeout=120, check=False)


def run(env, *args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / args[0]), *args[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def service_pids(env) -> dict[str, int]:
    run_dir = os.path.join(env["SLUICE_LOCAL_DIR"], "run")
    return {name[:-5]: json.load(open(os.path.join(run_dir, name)))["pid"]
            for name in os.listdir(run_dir) if name.endswith(".json")}


def test_deploy_local_up_predict_rerun_status_down(local_env):
    first = run(local_env, "deploy-local.sh")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Sluice is up." in first.stdout
    for dag_id in ("prepare_dataset", "train_model", "deploy_model"):
        assert f"[{dag_id}]" in first.stdout
    pids = service_pids(local_env)
    assert {"mlflow", "airflow-api-server", "airflow-scheduler", "model"} <= set(pids)

    prediction = run(local_env, "scripts/perform-prediction.sh", timeout=60)
    assert prediction.returncode == 0, prediction.stderr
    assert '"predictions"' in prediction.stdout

    second = run(local_env, "deploy-local.sh")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "mlflow already running" in second.stdout
    # The champion did not change, so the model server kept serving without a restart.
    assert service_pids(local_env) == pids

    status = run(local_env, "deploy-local.sh", "status", timeout=60)
    assert status.returncode == 0 and "model" in status.stdout and "running" in status.stdout

    down = run(local_env, "deploy-local.sh", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert service_pids(local_env) == {}
    # Nothing left of any service's process group: workers and children included.
    assert live_members_of(set(pids.values())) == []


def live_members_of(groups: set[int]) -> list[str]:
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in groups and fields[0] != "Z":
            left.append(stat[: stat.rindex(")") + 1])
    return left
