"""The alert mails' SMTP connection in the cluster: an optional Secret every Airflow container reads."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.conftest import ENVIRONMENTS, REPO_ROOT, find
from tests.deploy.test_deploy_scripts import SENTINELS, script_env

SMTP_SECRET = {"secretRef": {"name": "sluice-airflow-smtp", "optional": True}}
SMTP_SENTINEL = "smtp://alerts:sentinel-smtp-7a6b@mail.example.org:587?disable_ssl=true"
# Where the connection is read: task pods (the failure callback and the tasks' send_alert), and the
# scheduler and DAG processor (callbacks of tasks whose process was lost).
COMPONENTS = ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server")


def airflow_containers(rendered) -> dict[str, dict]:
    from tests.deploy.test_airflow_chart import containers, pod_template

    found = {"task pod": pod_template(rendered)["spec"]["containers"][0]}
    for obj in find(rendered, "Deployment") + find(rendered, "StatefulSet"):
        if obj["metadata"]["name"] in COMPONENTS:
            found[obj["metadata"]["name"]] = containers(obj)[0]
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_airflow_container_reads_the_optional_smtp_secret(airflow_rendered, env):
    found = airflow_containers(airflow_rendered(env))
    assert set(found) >= {"task pod", "airflow-scheduler", "airflow-dag-processor"}
    for name, container in found.items():
        assert SMTP_SECRET in container.get("envFrom", []), name


def dry_run(tmp_path, kubectl, **extra: str) -> tuple[subprocess.CompletedProcess, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = script_env(tmp_path, kubectl, **SENTINELS, **extra)
    out = tmp_path / "render"
    result = subprocess.run([str(REPO_ROOT / "deploy-airflow.sh"), "--dry-run", "--env", "dev", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def test_the_smtp_secret_is_applied_redacted_only_when_the_connection_is_set(tmp_path, kubectl):
    result, out = dry_run(tmp_path / "with", kubectl, AIRFLOW_CONN_SMTP_DEFAULT=SMTP_SENTINEL)
    (path,) = out.glob("*-secret-sluice-airflow-smtp.yaml")
    secret = yaml.safe_load(path.read_text())
    assert secret["metadata"] == {"name": "sluice-airflow-smtp", "namespace": "airflow"}
    assert secret["stringData"] == {"AIRFLOW_CONN_SMTP_DEFAULT": "REDACTED-from-AIRFLOW_CONN_SMTP_DEFAULT"}
    texts = [result.stdout, result.stderr] + [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert not any("sentinel-smtp" in text for text in texts)

    _, out = dry_run(tmp_path / "without", kubectl)
    assert list(out.glob("*-secret-sluice-airflow-connections.yaml"))
    assert not list(out.glob("*-secret-sluice-airflow-smtp.yaml"))
