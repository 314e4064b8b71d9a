"""The one lookup of a registered model version, and a quick check that the tracking server answers.

Both runtimes use it: the pipelines (through tasks.registry) to deploy `champion`, the model
server to pin an alias to a fixed version before loading. It lives beside the use cases because
the model server may import nothing of the project but `models`.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# MLflow's client retries a refused connection 7 times with backoff factor 2 and a 120 s timeout
# per call: about four minutes per call before it gives up, and a task makes several calls. A
# server that is down is not coming back within a task's lifetime, and a slow answer is a real
# problem to report, so the budget is a few seconds (still overridable from the environment).
MLFLOW_CLIENT_RETRY_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
TRACKING_CHECK_TIMEOUT_S = 5.0
START_HINT = "start it with ./deploy-local.sh (locally) or check the MLflow deployment and mlflow_tracking_uri"


class TrackingServerUnavailable(RuntimeError):
    """The MLflow tracking server did not answer its health check."""


@dataclass(frozen=True)
class ResolvedVersion:
    """A registered model version found from an alias or a number."""

    name: str
    ref: str
    version: str
    run_id: str
    download_uri: str

    @property
    def uri(self) -> str:
        """`models:/<name>/<version>`: loading it cannot race a later alias move."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "ref": self.ref,
            "version": self.version,
            "run_id": self.run_id,
            "download_uri": self.download_uri,
        }


def limit_client_retries() -> None:
    """Give the MLflow client the retry budget above unless the environment already sets one."""
    for key, value in MLFLOW_CLIENT_RETRY_BUDGET.items():
        os.environ.setdefault(key, value)


def require_tracking_server(tracking_uri: str | None) -> None:
    """Call before the first MLflow request: the short retry budget, then at once a readable error
    naming the URL when the server does not answer (instead of minutes of retries per call)."""
    limit_client_retries()
    check_tracking_server(tracking_uri)


def check_tracking_server(tracking_uri: str | None, *, timeout: float = TRACKING_CHECK_TIMEOUT_S) -> None:
    """Fail at once, naming the URL, when an http(s) tracking server does not answer /health.

    File and database tracking URIs have no server to check and pass.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the configured server
            if response.status == 200:
                return
            problem = f"answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = f"is unreachable ({getattr(exc, 'reason', exc)})"
    raise TrackingServerUnavailable(f"the MLflow tracking server at {uri} {problem}; {START_HINT}")


def resolve(name: str, ref: str | int, *, client: Any = None, tracking_uri: str | None = None) -> ResolvedVersion:
    """The version behind an alias ("champion") or a version number ("3") of a registered model."""
    from mlflow import MlflowClient

    ref = str(ref).strip()
    if not ref:
        raise ValueError("the model reference is empty: give an alias (e.g. champion) or a version number")
    client = client or MlflowClient(tracking_uri=tracking_uri)
    found = client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    version = str(found.version)
    return ResolvedVersion(
        name=name,
        ref=ref,
        version=version,
        run_id=found.run_id or "",
        download_uri=client.get_model_version_download_uri(name, version),
    )


def pin_model_uri(model_uri: str) -> tuple[str, str]:
    """(URI to load, version label) for a model URI; an alias becomes its version before loading.

    `models:/name@alias` and `models:/name/latest` are looked up once, so the served files and
    the version label always agree even when the alias moves during the load.
    """
    if model_uri.startswith("models:/"):
        ref = model_uri.removeprefix("models:/").strip("/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            resolved = resolve(name, alias)
            return resolved.uri, resolved.version
        name, _, version = ref.partition("/")
        if version.isdigit():
            return model_uri, version
        if version in ("", "latest"):
            from mlflow import MlflowClient

            newest = max(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
            return f"models:/{name}/{newest}", str(newest)
        return model_uri, version  # a stage name; MLflow resolves it at load time
    if model_uri.startswith("runs:/"):
        return model_uri, "run:" + model_uri.removeprefix("runs:/").split("/", 1)[0]
    # A folder (KServe mounts the model at /mnt/models): the deploy step may leave a VERSION file.
    version_file = Path(model_uri.removeprefix("file://")) / "VERSION"
    if version_file.is_file():
        return model_uri, version_file.read_text(encoding="utf-8").strip() or "local"
    return model_uri, "local"


# The aliases of the model lifecycle: training sets `challenger`, only a promotion (the evaluation
# gate, or a person through the promote_model DAG) moves `champion`, and the champion it replaces
# keeps `previous-champion`, so a rollback is one alias move.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"


class StaleChampion(RuntimeError):
    """The champion moved after the promotion was decided: decide again against the new one."""


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version number behind `alias`, or None when the model or the alias does not exist.

    Any other error (the server down, refused access) raises: "no champion" must never be
    concluded from a request that failed, since the gate promotes without comparing then.
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        missing_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        missing_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
        if missing_model or missing_alias:
            return None
        raise


_UNCHECKED = object()


def move_champion(client: Any, name: str, version: str, *, expected_champion: Any = _UNCHECKED) -> dict[str, Any]:
    """`champion` -> `version`; the champion it replaces gets `previous-champion`.

    `expected_champion` (a version or None for "no champion") is what the decision was made
    against: when the champion is neither that nor `version` any more, StaleChampion. Repeating
    a move that is done changes nothing, so a retried task is safe.
    Returns {"champion", "previous_champion", "moved"}.
    """
    version = str(version)
    client.get_model_version(name, version)  # a version that does not exist fails here, before any move
    current = alias_version(client, name, CHAMPION)
    if current == version:
        return {"champion": version, "previous_champion": alias_version(client, name, PREVIOUS_CHAMPION),
                "moved": False}
    expected = None if expected_champion in (None, _UNCHECKED) else str(expected_champion)
    if expected_champion is not _UNCHECKED and current != expected:
        raise StaleChampion(
            f"the {CHAMPION} of {name} is version {current}, not {expected_champion} as when the promotion of "
            f"version {version} was decided; evaluate again"
        )
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current)
    client.set_registered_model_alias(name, CHAMPION, version)
    return {"champion": version, "previous_champion": current, "moved": True}
