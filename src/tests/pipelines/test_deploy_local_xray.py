"""./deploy-local.sh --with-xray, for real on a throw-away platform: the synthetic scans land in the lake, the
image chain (prepare_images -> train_images -> deploy_xray) runs and the xray server answers
perform-prediction.sh --model xray; a second run trains nothing and keeps the server; status and down
include it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.slow

IMAGES = 300  # small, so the three architectures train in about a minute on 2 cores
# Looked at every minute (the shortest cron), once: "picked up" takes about a minute.
SCHEDULES = {name: {"schedule": "* * * * *", "watch_minutes": 0} for name in ("prepare_dataset", "prepare_images")}


@pytest.fixture(scope="module")
def platform_env(tmp_path_factory):
    schedules = tmp_path_factory.mktemp("schedules") / "schedules.json"
    schedules.write_text(json.dumps(SCHEDULES))
    env = {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW__", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"},
        "SLUICE_LOCAL_DIR": str(tmp_path_factory.mktemp("platform")),
        "SLUICE_ROWS": "2000", "SLUICE_EPOCHS": "1", "SLUICE_XRAY_IMAGES": str(IMAGES), "SLUICE_XRAY_EPOCHS": "1",
        "SLUICE_SCHEDULES_FILE": str(schedules),
        **{f"SLUICE_{name}_PORT": str(free_port()) for name in ("AIRFLOW", "MLFLOW", "INFERENCE", "ROUTER", "XRAY",
                                                                 "UI")},
    }
    yield env
    subprocess.run([str(REPO_ROOT / "deploy-local.sh"), "down"], env=env, timeout=120, check=False)


def sh(env, *args, timeout=2400, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / args[0]), *args[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def xray_service(env) -> dict:
    return json.loads((Path(env["SLUICE_LOCAL_DIR"]) / "run" / "xray.json").read_text())


def test_with_xray_serves_the_image_model_and_converges(platform_env, tmp_path):
    first = sh(platform_env, "deploy-local.sh", "--with-xray")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-3000:]
    out = first.stdout
    assert f"generating {IMAGES} synthetic xray scans" in out
    for dag_id in ("prepare_images", "train_images", "deploy_xray"):
        assert f"[{dag_id}]" in out, dag_id
    assert "started by the new-champion event of train_images" in out  # the first model is promoted
    port = platform_env["SLUICE_XRAY_PORT"]
    assert f"Xray (V2)       http://127.0.0.1:{port}/v2/models/xray/infer" in out
    served = xray_service(platform_env)
    assert served["meta"]["version"] == "1" and served["meta"]["port"] == int(port)

    lake = Path(platform_env["SLUICE_LOCAL_DIR"]) / "datalake" / "raw" / "xray"
    scan = next(lake.glob("*/*/*/pneumonia/scan-*.png"))
    predicted = sh(platform_env, "scripts/perform-prediction.sh", "--model", "xray", "--explain", str(scan),
                   timeout=120, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    line = next(x for x in predicted.stdout.splitlines() if x.startswith(str(scan)))
    assert "normal 0." in line and "pneumonia 0." in line and "heat map of" in line
    assert (tmp_path / f"{scan.stem}.heatmap.png").read_bytes()[:4] == b"\x89PNG"

    second = sh(platform_env, "deploy-local.sh", "--with-xray", timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "xray images present" in second.stdout
    assert "xray image set already prepared by" in second.stdout and "nothing to run" in second.stdout
    assert "[train_images]" not in second.stdout and "[deploy_xray]" not in second.stdout
    assert xray_service(platform_env)["pid"] == served["pid"]

    status = sh(platform_env, "deploy-local.sh", "status", timeout=60)
    line = next(x for x in status.stdout.splitlines() if x.startswith("xray "))
    assert "running" in line and f"port={port}" in line
    down = sh(platform_env, "deploy-local.sh", "down", timeout=120)
    assert down.returncode == 0 and "xray" in down.stdout
    assert not (Path(platform_env["SLUICE_LOCAL_DIR"]) / "run" / "xray.json").exists()
