"""Running ./deploy-cluster.sh against the simulated cluster, and what the tests compare before and after."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from cryptography.fernet import Fernet

from tests.support.processes import REPO_ROOT

# Objects that change without anyone deploying: kwok's heartbeats and the controllers' own
# bookkeeping. Helm's release records (one Secret per revision, by design of `helm upgrade`) are
# skipped by type.
VOLATILE_KINDS = {"Event", "Lease", "Node", "Endpoints", "EndpointSlice"}
# ComponentStatus is computed on every read (no resourceVersion, nothing stored).
COMPUTED_KINDS = {"ComponentStatus"}


def environment_secrets() -> dict[str, str]:
    """A test environment's secrets: random, never printed, handed to the scripts by environment."""
    values = {name: secrets.token_urlsafe(18) for name in (
        "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_DB_PASSWORD",
        "ES_FILEBEAT_PASSWORD", "ES_AIRFLOW_READER_PASSWORD", "MLFLOW_DB_PASSWORD")}
    values["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
    account_key = secrets.token_urlsafe(32)
    values["AZURE_STORAGE_CONNECTION_STRING"] = (
        f"DefaultEndpointsProtocol=https;AccountName=sluicetest;AccountKey={account_key};EndpointSuffix=core.windows.net"
    )
    values["AIRFLOW_CONN_WASB_DATALAKE"] = f"wasb://sluicetest:{account_key}@"
    # Only stored in the chart's values: no git-sync container runs in the simulated cluster.
    values["SLUICE_GIT_REPO"] = "https://git.example.invalid/sluice.git"
    return values


def deploy_cluster(env: dict[str, str], secrets_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """./deploy-cluster.sh --env dev with `env` (which carries the environment's secrets)."""
    return subprocess.run(
        ["./deploy-cluster.sh", "--env", "dev", *args], cwd=REPO_ROOT,
        env={**env, "SLUICE_SECRETS_DIR": str(secrets_dir)},
        capture_output=True, text=True, timeout=1800, check=False,
    )


def resource_versions(listing: dict) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> resourceVersion of every object that deploying could touch."""
    versions = {}
    for item in listing["items"]:
        meta = item["metadata"]
        if item["kind"] in VOLATILE_KINDS | COMPUTED_KINDS or item.get("type") == "helm.sh/release.v1":
            continue
        versions[(item["kind"], meta.get("namespace", ""), meta["name"])] = meta["resourceVersion"]
    return versions
