"""The README's main command, for real: ./deploy-local.sh up twice (it converges), a prediction, status, down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

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
    passwords = os.path.join(local_env["SLUICE_LOCAL_DIR"], "airflow", "simple_auth_manager_passwords.json.generated")
    password = json.load(open(passwords))["admin"]
    assert password not in first.stdout + first.stderr, "the Airflow password must never be printed"
    for dag_id in ("prepare_dataset", "train_model", "deploy_model"):
        assert f"[{dag_id}]" in first.stdout
    pids = service_pids(local_env)
    assert {"mlflow", "airflow-api-server", "airflow-scheduler", "model"} <= set(pids)
    # The first model is promoted by the gate; its asset event deploys it, and deploy-local follows
    # that run instead of triggering a second one.
    assert [run["run_type"] for run in dag_runs(local_env, "deploy_model")] == ["asset_triggered"]

    prediction = run(local_env, "scripts/perform-prediction.sh", timeout=60)
    assert prediction.returncode == 0, prediction.stderr
    assert '"predictions"' in prediction.stdout

    second = run(local_env, "deploy-local.sh")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "mlflow already running" in second.stdout
    # Unchanged raw data: nothing is prepared, trained or registered again, and the model
    # server keeps serving the same champion without a restart.
    assert "nothing to run" in second.stdout and "[train_model]" not in second.stdout
    assert service_pids(local_env) == pids
    assert registered_versions(local_env) == ["1"]
    assert len(dag_runs(local_env, "deploy_model")) == 1

    # The documented promote/rollback command: promote_model, then the deploy its asset event starts
    # (the same version again here, so the served process stays).
    promoted = run(local_env, ".venv/bin/python", "scripts/local_platform.py", "promote", "--version", "1",
                   timeout=600)
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-3000:]
    assert "[promote_model]" in promoted.stdout and "champion: version 1 is served" in promoted.stdout
    assert [r["run_type"] for r in dag_runs(local_env, "deploy_model")] == ["asset_triggered"] * 2
    assert service_pids(local_env) == pids
    preprocessed = os.path.join(local_env["SLUICE_LOCAL_DIR"], "datalake", "preprocessed", "wachttijden")
    assert len(os.listdir(preprocessed)) == 1

    # A crashed model server comes back by itself (its supervisor restarts it), no re-run needed.
    supervisor = os.path.join(local_env["SLUICE_LOCAL_DIR"], "run", "model.supervisor")
    crashed = json.load(open(supervisor))["child_pid"]
    os.kill(crashed, signal.SIGKILL)
    deadline, again = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        if json.load(open(supervisor))["child_pid"] != crashed:
            again = run(local_env, "scripts/perform-prediction.sh", timeout=60)
            if again.returncode == 0:
                break
        time.sleep(1)
    assert again is not None and again.returncode == 0 and '"predictions"' in again.stdout, again

    status = run(local_env, "deploy-local.sh", "status", timeout=60)
    assert status.returncode == 0 and "model" in status.stdout and "running" in status.stdout
    assert "restarts=1 (last: killed by SIGKILL)" in status.stdout

    down = run(local_env, "deploy-local.sh", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert service_pids(local_env) == {}
    # Nothing left of any service's process group: workers and children included.
    assert live_members_of(set(pids.values())) == []


def dag_runs(env, dag_id: str) -> list[dict]:
    """The DAG's runs, from the platform's Airflow REST API."""
    base = f"http://127.0.0.1:{env['SLUICE_AIRFLOW_PORT']}"
    passwords = os.path.join(env["SLUICE_LOCAL_DIR"], "airflow", "simple_auth_manager_passwords.json.generated")
    login = json.dumps({"username": "admin", "password": json.load(open(passwords))["admin"]}).encode()
    request = urllib.request.Request(f"{base}/auth/token", data=login, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.load(response)["access_token"]
    request = urllib.request.Request(f"{base}/api/v2/dags/{dag_id}/dagRuns",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["dag_runs"]


def registered_versions(env) -> list[str]:
    url = (f"http://127.0.0.1:{env['SLUICE_MLFLOW_PORT']}/api/2.0/mlflow/model-versions/search"
           "?filter=name%3D%27wachttijden%27")
    with urllib.request.urlopen(url, timeout=30) as response:
        return sorted(v["version"] for v in json.load(response).get("model_versions", []))


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
