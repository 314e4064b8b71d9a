"""KServe Standard mode publishes InferenceServices on the Istio gateway under the host scripts use."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import DEPLOY_DIR, REPO_ROOT, one


def load(path: str) -> dict:
    return yaml.safe_load((DEPLOY_DIR / path).read_text())


def test_kserve_runs_in_standard_mode_on_the_istio_ingress_class(overlay_rendered):
    controller = load("kserve/values.yaml")["kserve"]["controller"]
    assert controller["deploymentMode"] == "Standard"
    class_name = controller["gateway"]["ingressGateway"]["className"]
    ingress_class = one(overlay_rendered("dev", "istio"), "IngressClass", class_name)
    assert ingress_class["spec"]["controller"] == "istio.io/ingress-controller"
    assert load("istio/istiod.yaml")["meshConfig"]["ingressClass"] == class_name


def test_istiod_serves_ingresses_on_the_gateway_release():
    mesh = load("istio/istiod.yaml")["meshConfig"]
    deploy_script = (REPO_ROOT / "deploy-istio.sh").read_text()
    assert re.search(r"helm_release istio-ingressgateway istio-system gateway", deploy_script)
    # The gateway chart labels its pods istio=<release name without the "istio-" prefix>.
    assert mesh["ingressSelector"] == "istio-ingressgateway".removeprefix("istio-")
    assert mesh["ingressService"] == "istio-ingressgateway"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_prediction_host_template(env):
    values = load("kserve/values.yaml")
    if (DEPLOY_DIR / "kserve" / f"values-{env}.yaml").exists():
        values["kserve"]["controller"]["gateway"].update(load(f"kserve/values-{env}.yaml")["kserve"]["controller"]["gateway"])
    domain = values["kserve"]["controller"]["gateway"]["domain"]
    assert re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", domain)
    if env == "dev":
        # A repository file: missing is a failure, not a skip.
        script = REPO_ROOT / "scripts" / "perform-prediction.sh"
        assert f"SLUICE_INGRESS_DOMAIN:-{domain}" in script.read_text(), "prediction script uses another domain"


def test_models_namespace_is_shared_by_kserve_and_airflow(overlay_rendered):
    for component in ("kserve", "airflow"):
        assert one(overlay_rendered("dev", component), "Namespace", "models")
