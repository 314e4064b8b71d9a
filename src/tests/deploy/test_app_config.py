"""The web app's ConfigMap (deploy/base/app, per environment) points at the Services the deploy builders create:
the predictor of each use case's InferenceService in the KServe namespace, and is read by AppConfig as is."""

from __future__ import annotations

import inspect
import re

import pytest

from app.config import AppConfig
from tasks.config import Settings
from tasks.deploy.names import isvc_name, predictor_host
from tests.deploy.conftest import one

ENVS = ["dev", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_the_apps_model_urls_are_the_builders_predictor_services(overlay_rendered, env):
    data = one(overlay_rendered(env, "app"), "ConfigMap", "sluice-app")["data"]
    settings = Settings()
    namespace = settings.kserve_namespace

    def url(model_name: str, role: str | None = None) -> str:
        return f"http://{predictor_host(isvc_name(model_name, role), namespace)}"

    config = AppConfig.from_env(data)
    assert config.model_url == url(settings.model_name)
    assert config.challenger_url == url(settings.model_name, "challenger")
    assert config.xray_url == url(settings.xray_model_name) == "http://xray-predictor.models.svc.cluster.local"
    assert (config.model_name, config.xray_model_name) == (settings.model_name, settings.xray_model_name)
    # Every key is one AppConfig reads (a misspelt key would silently leave the local default in force).
    read = set(re.findall(r'"(SLUICE_APP_[A-Z_]+)"', inspect.getsource(AppConfig.from_env)))
    assert "SLUICE_APP_XRAY_URL" in read
    assert set(data) <= read, set(data) - read
