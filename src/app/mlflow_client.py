"""The few MLflow REST calls the app makes (read only): registered versions, runs, artifacts, latest report runs.

Plain REST rather than the mlflow package: the app's image stays small (no MLflow, no SQLAlchemy), and
these endpoints are MLflow's stable public API.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from app.backends import BackendError, call

API = "/api/2.0/mlflow"


class Mlflow:
    def __init__(self, url: str, *, timeout_s: float = 30.0, session: requests.Session | None = None):
        self.url, self.timeout_s = url, timeout_s
        self.session = session or requests.Session()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return call(self.session, "MLflow tracking server", "GET", f"{self.url}{path}", params=params,
                    timeout=self.timeout_s).json()

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of a registered model; {} when the model is not registered (yet)."""
        try:
            model = self.get(f"{API}/registered-models/get", name=name)["registered_model"]
        except BackendError as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "HTTP 404" in str(exc):
                return {}
            raise
        return {a["alias"]: str(a["version"]) for a in model.get("aliases", [])}

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every registered version of `name`, newest first, with its tags as a dict."""
        found, token = [], None
        while True:
            params = {"filter": f"name='{name}'", "max_results": 200, "order_by": "version_number DESC"}
            if token:
                params["page_token"] = token
            page = self.get(f"{API}/model-versions/search", **params)
            for version in page.get("model_versions", []):
                found.append({**version, "tags": {t["key"]: t["value"] for t in version.get("tags", [])}})
            token = page.get("next_page_token")
            if not token:
                return sorted(found, key=lambda v: int(v["version"]), reverse=True)

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's latest metric values and its tags, as {"metrics": {...}, "tags": {...}, "info": {...}}."""
        run = self.get(f"{API}/runs/get", run_id=run_id)["run"]
        data = run.get("data", {})
        return {
            "info": run.get("info", {}),
            "metrics": {m["key"]: float(m["value"]) for m in data.get("metrics", [])},
            "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
        }

    def run_artifact(self, run_id: str, path: str) -> bytes | None:
        """A file logged with a run (through the server's artifact proxy); None when it has no such file."""
        return self._artifact("/get-artifact", path=path, run_uuid=run_id)

    def version_artifact(self, name: str, version: str, path: str) -> bytes | None:
        """A file of a registered version's model folder; None when it has no such file.

        Read from where the version's files are: a logged model (MLflow 3's log_model, `models:/m-...`) or
        a run's artifacts (`runs:/<run>/<path>`). MLflow 3.17's /model-versions/get-artifact answers 500 for
        a `runs:/` source on a server with proxied artifacts, so it is only the last resort.
        """
        found = self.get(f"{API}/model-versions/get", name=name, version=version)["model_version"]
        source = found.get("source", "")
        model_id = found.get("model_id") or (source.removeprefix("models:/") if source.startswith("models:/m-")
                                             else "")
        if model_id:
            return self._artifact(f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
                                  artifact_file_path=path)
        if source.startswith("runs:/"):
            run_id, _, folder = source.removeprefix("runs:/").partition("/")
            return self.run_artifact(run_id, f"{folder.strip('/')}/{path}" if folder.strip("/") else path)
        return self._artifact("/model-versions/get-artifact", path=path, name=name, version=version)

    def latest_run(self, experiment_name: str) -> dict[str, Any] | None:
        """The newest finished run of an experiment, None when the experiment or a finished run does not exist."""
        try:
            experiment = self.get(f"{API}/experiments/get-by-name", experiment_name=experiment_name)["experiment"]
        except BackendError as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "HTTP 404" in str(exc):
                return None
            raise
        body = {"experiment_ids": [experiment["experiment_id"]], "filter": "attributes.status = 'FINISHED'",
                "order_by": ["attributes.start_time DESC"], "max_results": 1}
        runs = call(self.session, "MLflow tracking server", "POST", f"{self.url}{API}/runs/search", json=body,
                    timeout=self.timeout_s).json().get("runs", [])
        return runs[0] if runs else None

    def json_artifact(self, run_id: str, path: str) -> Any:
        data = self.run_artifact(run_id, path)
        return None if data is None else json.loads(data)

    def _artifact(self, route: str, **params: str) -> bytes | None:
        try:
            response = call(self.session, "MLflow tracking server", "GET", f"{self.url}{route}", params=params,
                            timeout=self.timeout_s)
        except BackendError as exc:
            # A missing file: 404, or a 500 naming the path from an artifact store that raises for it.
            if "HTTP 404" in str(exc) or "No such file" in str(exc) or "does not exist" in str(exc):
                return None
            raise
        return response.content
