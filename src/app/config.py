"""Where the app finds its backends, from the environment (set by ./deploy-local.sh or the cluster's ConfigMap)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The one hint every page gives when a backend does not answer.
START_HINT = "start the local platform with ./deploy-local.sh (in a cluster: check that service's Deployment)"
# The X-ray page's: the image model server is started only on request.
XRAY_START_HINT = ("start the local platform with the image model, ./deploy-local.sh --with-xray (in a cluster: "
                   "deploy the xray InferenceService, the deploy_xray DAG or SLUICE_MODEL_NAME=xray ./deploy-model.sh)")


@dataclass(frozen=True)
class AppConfig:
    model_url: str  # the champion's model server (V1 :predict/:explain)
    challenger_url: str  # the challenger's model server; empty: no side-by-side
    router_url: str  # the mirroring entry point; empty: mirroring is not set up
    mlflow_url: str  # MLflow's REST API and artifact proxy
    datalake_dir: Path | None  # a local data-lake folder (local mode); None: reports come from MLflow only
    model_name: str = "wachttijden"
    timeout_s: float = 30.0
    xray_url: str = "http://127.0.0.1:8084"  # the xray image model's server (V1 :predict/:explain)
    xray_model_name: str = "xray"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AppConfig:
        env = os.environ if env is None else env
        lake = env.get("SLUICE_APP_DATALAKE_DIR", "").strip()
        return cls(
            model_url=_url(env.get("SLUICE_APP_MODEL_URL", "http://127.0.0.1:8081")),
            challenger_url=_url(env.get("SLUICE_APP_CHALLENGER_URL", "")),
            router_url=_url(env.get("SLUICE_APP_ROUTER_URL", "")),
            mlflow_url=_url(env.get("SLUICE_APP_MLFLOW_URL", "http://127.0.0.1:5000")),
            datalake_dir=Path(lake) if lake else None,
            model_name=env.get("SLUICE_APP_MODEL_NAME", "wachttijden").strip() or "wachttijden",
            timeout_s=float(env.get("SLUICE_APP_TIMEOUT_S", "30")),
            # Settings.local_xray_port (8084) by default, as ./deploy-local.sh --with-xray serves it.
            xray_url=_url(env.get("SLUICE_APP_XRAY_URL", "http://127.0.0.1:8084")),
            xray_model_name=env.get("SLUICE_APP_XRAY_MODEL_NAME", "xray").strip() or "xray",
        )


def _url(value: str) -> str:
    return value.strip().rstrip("/")
