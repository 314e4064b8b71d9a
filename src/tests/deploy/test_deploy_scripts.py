"""The deploy-*.sh scripts: shellcheck, preflight, and a --dry-run that needs no cluster."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import COMPONENTS, DEPLOY_DIR, REPO_ROOT, airflow_sets, shared_dir

SCRIPTS = [REPO_ROOT / f"deploy-{c}.sh" for c in [*COMPONENTS, "cluster"]]
SHELL_FILES = [*SCRIPTS, DEPLOY_DIR / "lib" / "common.sh"]
# Values no rendered file, command log or console line may ever contain.
SENTINELS = {
    "AIRFLOW_FERNET_KEY": "sentinel-fernet-0f9e8d", "AIRFLOW_API_SECRET_KEY": "sentinel-api-7c6b5a",
    "AIRFLOW_JWT_SECRET": "sentinel-jwt-4d3c2b", "AIRFLOW_ADMIN_PASSWORD": "sentinel-admin-1a2b3c",
    "AIRFLOW_DB_PASSWORD": "sentinel-db-9f8e7d", "AIRFLOW_DB_CONN": "postgresql://u:sentinel-conn-6e5d@h/db",
    "AIRFLOW_CONN_WASB_DATALAKE": "wasb://acct:sentinel-wasb-5c4b@", "GIT_SYNC_USERNAME": "sentinel-gituser",
    "GIT_SYNC_PASSWORD": "sentinel-gitpass-3b2a1c", "ES_FILEBEAT_PASSWORD": "sentinel-fb-2a1b0c",
    "ES_AIRFLOW_READER_PASSWORD": "sentinel-reader-8d7c6b", "MLFLOW_DB_PASSWORD": "sentinel-mlflowdb-5e4d",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountKey=sentinel-azure-4f3e",
}


def script_env(tmp_path: Path, kubectl: str, **extra: str) -> dict[str, str]:
    """No cluster (KUBECONFIG points nowhere), no helm on PATH, no developer secrets files."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    helm = fake_bin / "helm"
    helm.write_text(f"#!/bin/sh\ntouch {tmp_path}/helm-was-called\nexit 99\n")
    helm.chmod(0o755)
    (tmp_path / "no-secrets").mkdir(exist_ok=True)
    path = os.pathsep.join([str(fake_bin), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
            "KUBECTL": kubectl, "PYTHON": str(REPO_ROOT / ".venv" / "bin" / "python"),
            "SLUICE_SECRETS_DIR": str(tmp_path / "no-secrets"), **extra}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory, kubectl):
    """deploy-cluster.sh --dry-run for dev and prod, with sentinel secrets in the environment.

    Without ../shared the Airflow step records its helm command but renders no chart.
    """
    shared = shared_dir() or Path("/nonexistent")
    runs = {}
    for env_name in ("dev", "prod"):
        tmp = tmp_path_factory.mktemp(f"dry-run-{env_name}")
        env = script_env(tmp, kubectl, SLUICE_SHARED_DIR=str(shared), **SENTINELS)
        result = subprocess.run([str(REPO_ROOT / "deploy-cluster.sh"), "--dry-run", "--env", env_name,
                                 "--out", str(tmp / "render")], capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert not (tmp / "helm-was-called").exists(), "a dry run must not call helm"
        runs[env_name] = (tmp / "render", result.stdout + result.stderr)
    return runs


def commands(render: Path, component: str) -> list[list[str]]:
    lines = (render / component / "commands.sh").read_text().splitlines()
    return [shlex.split(line) for line in lines if line and not line.startswith(("#", "set "))]


class TestShell:
    @pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
    def test_shellcheck_style_clean(self, path):
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            pytest.skip("shellcheck not installed (apt-get install shellcheck)")
        # From the repository root, where the scripts' `# shellcheck source=` paths are rooted.
        result = subprocess.run([shellcheck, "-x", "-S", "style", str(path.relative_to(REPO_ROOT))],
                                cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout

    @pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
    def test_strict_mode_and_no_tracing(self, path):
        text = path.read_text()
        assert "set -euo pipefail" in text
        assert not re.search(r"^\s*set -[a-z]*x", text, re.M), "never trace: secrets would be echoed"
        assert os.access(path, os.X_OK)

    @pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
    def test_help(self, path, tmp_path, kubectl):
        result = subprocess.run([str(path), "--help"], capture_output=True, text=True,
                                env=script_env(tmp_path, kubectl))
        assert result.returncode == 0 and "--dry-run" in result.stderr


class TestPreflight:
    REQUIRED = {
        "istio": [],
        "kserve": [],
        "app": [],
        "elasticsearch": ["ES_FILEBEAT_PASSWORD", "ES_AIRFLOW_READER_PASSWORD"],
        "mlflow": ["MLFLOW_DB_PASSWORD", "AZURE_STORAGE_CONNECTION_STRING"],
        "airflow": ["SLUICE_GIT_REPO", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET",
                    "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_CONN_WASB_DATALAKE", "ES_AIRFLOW_READER_PASSWORD",
                    "AIRFLOW_DB_PASSWORD"],
    }

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_names_every_missing_tool_context_and_variable(self, component, tmp_path, kubectl):
        env = script_env(tmp_path, kubectl)
        (tmp_path / "bin" / "helm").unlink()
        result = subprocess.run([str(REPO_ROOT / f"deploy-{component}.sh")], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 1
        assert "tool 'helm' not found" in result.stderr
        assert "no current kubectl context" in result.stderr
        for var in self.REQUIRED[component]:
            assert var in result.stderr, f"preflight does not name {var}"

    def test_prod_airflow_wants_an_external_database_url(self, tmp_path, kubectl):
        result = subprocess.run([str(REPO_ROOT / "deploy-airflow.sh"), "--env", "prod"], capture_output=True,
                                text=True, env=script_env(tmp_path, kubectl), timeout=120)
        assert "AIRFLOW_DB_CONN" in result.stderr and "AIRFLOW_DB_PASSWORD" not in result.stderr


class TestDryRun:
    @pytest.mark.parametrize("env_name", ["dev", "prod"])
    def test_every_component_rendered(self, dry_runs, env_name):
        render, _ = dry_runs[env_name]
        assert sorted(p.name for p in render.iterdir()) == sorted(COMPONENTS)
        for component in COMPONENTS:
            assert list((render / component).glob("*.yaml")), component

    @pytest.mark.parametrize("env_name", ["dev", "prod"])
    def test_no_secret_value_leaks(self, dry_runs, env_name):
        render, console = dry_runs[env_name]
        texts = [console] + [p.read_text() for p in render.rglob("*") if p.is_file()]
        for name, value in SENTINELS.items():
            assert not any(value in text for text in texts), f"{name} leaked into the dry-run output"

    @pytest.mark.parametrize("env_name", ["dev", "prod"])
    def test_helm_releases_are_pinned_waited_and_idempotent(self, dry_runs, versions, env_name):
        render, _ = dry_runs[env_name]
        releases = {}
        for component in COMPONENTS:
            for cmd in commands(render, component):
                if cmd[:3] == ["helm", "upgrade", "--install"]:
                    releases[cmd[3]] = cmd
        assert set(releases) == {"istio-base", "istiod", "istio-ingressgateway", "cert-manager", "kserve-crd",
                                 "kserve", "elastic-operator", "mlflow", "airflow"}
        pins = set(versions.values())
        for name, cmd in releases.items():
            assert "--wait" in cmd, name
            if name == "mlflow":  # a chart of this repository, pinned by its own Chart.yaml
                assert cmd[4] == "charts/mlflow" and "--version" not in cmd
            else:
                assert cmd[cmd.index("--version") + 1] in pins, f"{name} is not pinned in versions.env"

    @pytest.mark.parametrize("env_name", ["dev", "prod"])
    def test_kubectl_applies_are_server_side(self, dry_runs, env_name):
        render, _ = dry_runs[env_name]
        for component in COMPONENTS:
            for cmd in commands(render, component):
                if cmd[:2] == ["kubectl", "apply"]:
                    assert "--server-side" in cmd and "--field-manager=sluice" in cmd

    def test_controllers_are_waited_for_before_their_dependants(self, dry_runs):
        render, _ = dry_runs["dev"]

        def position(component, predicate):
            return next(i for i, c in enumerate(commands(render, component)) if predicate(c))

        kserve = lambda c, n: c[:4] == ["helm", "upgrade", "--install", n]  # noqa: E731
        cert_manager_ready = position("kserve", lambda c: c[:2] == ["kubectl", "wait"]
                                      and "deployment/cert-manager-webhook" in c)
        assert position("kserve", lambda c: kserve(c, "cert-manager")) < cert_manager_ready
        assert cert_manager_ready < position("kserve", lambda c: kserve(c, "kserve"))
        crds_ready = position("elasticsearch", lambda c: c[:2] == ["kubectl", "wait"]
                              and "crd/elasticsearches.elasticsearch.k8s.elastic.co" in c)
        assert position("elasticsearch", lambda c: kserve(c, "elastic-operator")) < crds_ready
        assert crds_ready < position("elasticsearch", lambda c: c[:2] == ["kubectl", "apply"])

    def test_filebeat_starts_after_the_index_templates(self, dry_runs):
        render, _ = dry_runs["dev"]
        lines = (render / "elasticsearch" / "commands.sh").read_text().splitlines()
        template = next(i for i, line in enumerate(lines) if "_index_template/airflow-logs" in line)
        shipper = next(i for i, line in enumerate(lines) if "sluice.io/phase=shipper" in line)
        assert template < shipper

    @pytest.mark.parametrize("env_name", ["dev", "prod"])
    def test_airflow_render_is_what_the_tests_check(self, dry_runs, airflow_rendered, env_name):
        render, _ = dry_runs[env_name]
        (rendered_file,) = (render / "airflow").glob("*-helm-airflow.yaml")
        from_script = [d for d in yaml.safe_load_all(rendered_file.read_text()) if d]

        def stable(objects):  # the chart generates random passwords for its unused redis secret
            return sorted((o["kind"], o["metadata"]["name"], yaml.safe_dump(o)) for o in objects
                          if o["metadata"]["name"] not in {"airflow-redis-password", "airflow-broker-url"})

        assert stable(from_script) == stable(airflow_rendered(env_name))

    def test_airflow_script_sets_what_the_tests_set(self, dry_runs, versions):
        render, _ = dry_runs["dev"]
        helm = next(c for c in commands(render, "airflow") if c[:3] == ["helm", "upgrade", "--install"])
        sets = [helm[i + 1] for i, arg in enumerate(helm) if arg == "--set"]
        assert sets == airflow_sets(versions)

    def test_rendered_secrets_are_redacted_and_valid(self, dry_runs, versions):
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        render, _ = dry_runs["dev"]
        secrets = sorted(render.glob("*/*-secret-*.yaml"))
        assert len(secrets) >= 9
        for path in secrets:
            secret = yaml.safe_load(path.read_text())
            kubernetes_validate.validate(secret, versions["KUBERNETES_SCHEMA_VERSION"], strict=True)
            assert all(v.startswith("REDACTED-from-") for v in secret["stringData"].values()), path.name

    def test_dry_run_is_repeatable(self, tmp_path, kubectl):
        env = script_env(tmp_path, kubectl)
        outputs = []
        for attempt in range(2):
            out = tmp_path / f"render-{attempt}"
            subprocess.run([str(REPO_ROOT / "deploy-elasticsearch.sh"), "render", "--out", str(out)],
                           check=True, capture_output=True, env=env, timeout=300)
            outputs.append({p.relative_to(out): p.read_text().replace(str(out), "OUT")
                            for p in out.rglob("*") if p.is_file()})
        assert outputs[0] == outputs[1]


class TestDryRunWithoutTheDevEnvironment:
    def test_a_python_without_the_render_packages_stops_with_the_setup_command(self, tmp_path, kubectl):
        """A fresh clone: PYTHON is an interpreter with no packages at all (an empty venv)."""
        bare = tmp_path / "bare-venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
        env = script_env(tmp_path, kubectl, PYTHON=str(bare / "bin" / "python"))
        result = subprocess.run([str(REPO_ROOT / "deploy-mlflow.sh"), "--dry-run", "--out", str(tmp_path / "render")],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
        (line,) = [line for line in result.stderr.splitlines() if "scripts/setup.sh dev" in line]
        assert line.startswith("error: ") and "helm-python-sdk" in line and str(bare / "bin" / "python") in line
        assert not list((tmp_path / "render").glob("*-helm-mlflow.yaml")), "nothing rendered without the packages"
        assert not (tmp_path / "helm-was-called").exists()


class TestSecretsFiles:
    def test_every_secrets_file_has_a_committed_template(self):
        names = set()
        for script in SCRIPTS:
            names |= set(re.findall(r"^load_secrets (\w+)", script.read_text(), re.M))
        assert names == {"airflow", "elasticsearch", "mlflow"}
        for name in names:
            assert (DEPLOY_DIR / "secrets" / f"{name}.env.template").exists()

    def test_secrets_files_are_git_ignored_but_templates_are_not(self):
        if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
            pytest.skip("not a git checkout")

        def ignored(relative):
            return subprocess.run(["git", "check-ignore", "-q", relative], cwd=REPO_ROOT).returncode == 0

        assert ignored("deploy/secrets/airflow.env")
        assert not ignored("deploy/secrets/airflow.env.template")

    def test_loader_keeps_special_characters_and_lets_the_environment_win(self, tmp_path):
        (tmp_path / "demo.env").write_text(
            "# comment\n\nAZ=DefaultEndpointsProtocol=https;AccountKey=a$b`c\nQUOTED=\"x y\"\nKEEP=from-file\n")
        script = (f"source {DEPLOY_DIR / 'lib' / 'common.sh'}; load_secrets demo; "
                  "printf '%s|%s|%s' \"$AZ\" \"$QUOTED\" \"$KEEP\"")
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                                env={"PATH": "/usr/bin:/bin", "SLUICE_SECRETS_DIR": str(tmp_path),
                                     "KEEP": "from-env"})
        assert result.stdout == "DefaultEndpointsProtocol=https;AccountKey=a$b`c|x y|from-env"
