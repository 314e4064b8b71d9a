"""Glue shared by the DAG files: Airflow-side settings lookup and default task arguments."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pendulum

from pipelines._alerts import notify_failure

# src/ is the DAG folder; the project root (for local-mode relative paths) is its parent.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_ARGS = {
    "owner": "sluice",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    # A mail to the alert_emails Variable when a task has failed for good (pipelines/_alerts.py).
    "on_failure_callback": notify_failure,
}


# What the project's DAGs declare alike (dag(**DAG_DEFAULTS, ...)): a fixed past start, no catch-up runs.
DAG_DEFAULTS = {"start_date": pendulum.datetime(2024, 1, 1, tz="UTC"), "catchup": False, "default_args": DEFAULT_ARGS}

def load_settings():
    """Settings from Airflow Variables, read at task run time (never at parse time)."""
    from airflow.sdk import Variable

    from tasks.config import Settings

    return Settings.load(lambda key, default: Variable.get(key, default=default))


def open_lake(settings):
    """The data lake named by the `datalake_url` Variable.

    `wasb://<conn_id>` names an Airflow connection (`wasb_datalake` in the cluster), resolved
    here because src/tasks does not import Airflow; a relative folder is relative to the project.
    """
    from tasks.data.datalake import open_datalake

    url = settings.datalake_url
    if url.startswith("wasb://"):
        account, connection_string = _azure_from_connection(url.removeprefix("wasb://"))
        return open_datalake(f"azure://{account}", azure_connection_string=connection_string)
    if "://" not in url and not url.startswith("/"):
        url = str(PROJECT_ROOT / url)
    return open_datalake(url)


def _azure_from_connection(conn_id: str) -> tuple[str, str]:
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    extra = conn.extra_dejson
    connection_string = extra.get("connection_string")
    if connection_string:
        account = next(
            (p.split("=", 1)[1] for p in connection_string.split(";") if p.startswith("AccountName=")), "account"
        )
        return account, connection_string
    if not (conn.login and conn.password):
        raise ValueError(
            f"Airflow connection {conn_id!r} has neither extra.connection_string nor login (account) + password (key)"
        )
    suffix = extra.get("endpoint_suffix", "core.windows.net")
    return conn.login, (
        f"DefaultEndpointsProtocol=https;AccountName={conn.login};AccountKey={conn.password};EndpointSuffix={suffix}"
    )


def fail_without_retry(exc: Exception):
    """A bad-input failure (validation, configuration): retrying cannot help, so fail at once."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


@contextmanager
def no_retry_on(*errors: type[Exception]) -> Iterator[None]:
    """Inside the block, `errors` fail the task at once: bad input, or a server that is down and
    will not be back within the retry delay. Other errors keep the task's retries."""
    try:
        yield
    except errors as exc:
        raise fail_without_retry(exc) from exc


def pod_override_settings(task_key: str) -> dict:
    """This environment's pod settings for a task, from variables/<SLUICE_ENV>/airflow_pod_overrides.json.

    A file in git (not a Variable) because executor_config is needed when the DAG is parsed,
    where Variable.get is off limits; it is tiny and only read when it exists. The cluster's
    Airflow values set SLUICE_POD_OVERRIDES_FILE to the git-synced copy.
    """
    import json
    import os

    default = PROJECT_ROOT / "variables" / os.environ.get("SLUICE_ENV", "local") / "airflow_pod_overrides.json"
    path = Path(os.environ.get("SLUICE_POD_OVERRIDES_FILE", default))
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get(task_key, {})


def pinned_reference(value: str) -> str:
    """`value` with its `${KEY}` placeholders replaced from deploy/versions.env, the one pin file
    (the override files name an image by its pins instead of repeating them)."""
    if "$" not in value:
        return value
    from string import Template

    from tasks.deploy.versions import VERSIONS_FILE, read_versions

    if not VERSIONS_FILE.exists():
        raise ValueError(f"{value!r} names pins of {VERSIONS_FILE}, which does not exist")
    try:
        return Template(value).substitute(read_versions(VERSIONS_FILE))
    except KeyError as exc:
        raise ValueError(f"{value!r}: {VERSIONS_FILE} pins no {exc.args[0]}") from exc
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc} (write pins as ${{KEY}})") from exc


def train_executor_config() -> dict:
    """executor_config putting the training task on the GPU node pool (KubernetesExecutor only),
    in the GPU variant of the worker image when the override names one (`image`)."""
    settings = pod_override_settings("train_model")
    if not settings:
        return {}
    from kubernetes.client import models as k8s

    requests = {"cpu": settings.get("cpu_request"), "memory": settings.get("memory_request")}
    limits = {"nvidia.com/gpu": str(settings.get("gpu_limit", 1)), "memory": settings.get("memory_limit")}
    resources = k8s.V1ResourceRequirements(
        requests={k: v for k, v in requests.items() if v},
        limits={k: v for k, v in limits.items() if v},
    )
    image = pinned_reference(settings["image"]) if settings.get("image") else None
    return {
        "pod_override": k8s.V1Pod(
            spec=k8s.V1PodSpec(
                node_selector=settings.get("node_selector"),
                tolerations=[k8s.V1Toleration(**t) for t in settings.get("tolerations", [])],
                # The executor merges by container name; "base" is the worker container.
                # An image here replaces the executor's worker image for this task only.
                containers=[k8s.V1Container(name="base", image=image, resources=resources)],
            )
        )
    }
