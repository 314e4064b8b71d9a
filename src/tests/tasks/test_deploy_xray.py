"""deploy_model's steps for the xray use case, locally and for real: the image model registered in a real MLflow
server is served by a second supervised model server on its own port and service name, smoke-tested with
synthetic scans, and a re-run keeps it; the use case's settings, smoke request and refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks.config import Settings
from tasks.deploy import processes, steps
from tasks.deploy.use_cases import IMAGE, TABULAR, image_smoke_body, settings_for, use_case
from tests.support.processes import REPO_ROOT, free_port

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
XRAY_NAME = "xray-deploytest"


def xray_settings(tmp_path: Path, tracking_uri: str = "http://127.0.0.1:1") -> Settings:
    return Settings(
        mlflow_tracking_uri=tracking_uri, xray_model_name=XRAY_NAME, deploy_target="local",
        local_run_dir=str(tmp_path / "run"), local_serving_python=str(SERVING_PYTHON),
        local_inference_port=free_port(), local_xray_port=free_port(), local_router_port=free_port(),
    )


def test_settings_for_swaps_in_the_use_cases_model_and_port(tmp_path):
    settings = xray_settings(tmp_path)
    xray = settings_for(settings, IMAGE)
    assert (xray.model_name, xray.local_inference_port) == (XRAY_NAME, settings.local_xray_port)
    assert xray.kserve_namespace == settings.kserve_namespace and xray.deploy_target == "local"
    assert settings_for(settings, TABULAR) is settings
    with pytest.raises(ValueError, match="use_case must be one of"):
        settings_for(settings, "cats")


def test_the_image_smoke_request_is_two_decodable_scans_one_per_class():
    import base64

    from models.xray.images import decode_image

    body = image_smoke_body()
    (tensor,) = body["inputs"]
    assert tensor["datatype"] == "BYTES" and tensor["shape"] == [2]
    for data in tensor["data"]:
        assert decode_image(base64.b64decode(data)).ndim == 2
    assert image_smoke_body() == body  # seeded: the same request on every run
    assert use_case(IMAGE).smoke_output == "probabilities" and use_case(IMAGE).smoke_values_per_row == 2


def test_local_mirroring_of_the_image_model_is_refused_with_the_way_out(tmp_path):
    version = {"name": XRAY_NAME, "ref": "1", "version": "1", "run_id": "", "download_uri": "unused"}
    with pytest.raises(ValueError, match="local mirroring serves the tabular model only.*deploy_target=kubernetes"):
        steps.serve_mirroring(xray_settings(tmp_path), version, version, 100.0, IMAGE)
    assert processes.names(tmp_path / "run") == []


@pytest.fixture(scope="module")
def xray_registry(mlflow_server, pytestconfig) -> str:
    """The tiny xray model (tests/serving/xray_model.py) registered as version 1, alias champion."""
    if not SERVING_PYTHON.exists():
        pytest.skip("the serving environment .venv-serving is missing: run scripts/setup.sh dev")
    from mlflow import MlflowClient

    from tests.serving.xray_model import saved_region_model

    model_dir = saved_region_model(Path(pytestconfig.cache.mkdir("sluice-small-models-xray")))
    client = MlflowClient(mlflow_server)
    run = client.create_run(client.create_experiment(f"xray-deploy-tests-{time.time_ns()}"))
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(XRAY_NAME)
    registered = client.create_model_version(XRAY_NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(XRAY_NAME, "champion", registered.version)
    return mlflow_server


@pytest.mark.slow
def test_deploy_serves_the_xray_champion_as_its_own_service_and_converges(xray_registry, tmp_path, mlflow_client_env):
    settings = xray_settings(tmp_path, xray_registry)
    run_dir = tmp_path / "run"
    try:
        first = steps.deploy_model(settings, "champion", use_case=IMAGE)
        assert first.use_case == IMAGE and first.model_name == XRAY_NAME and first.entry == "xray"
        (service,) = first.services
        assert service["started"] and service["role"] == "xray" and service["version"] == "1"
        assert service["url"] == f"http://127.0.0.1:{settings.local_xray_port}"
        assert first.entry_path == f"/v2/models/{XRAY_NAME}/infer"
        # Two scans, two class probabilities each, from the synthetic smoke request.
        probabilities = first.predictions["xray"]
        assert len(probabilities) == 4 and all(0 <= p <= 1 for p in probabilities)
        assert abs(sum(probabilities) - 2) < 1e-4
        # The tabular champion's service name and port stay free for deploy_model.
        assert processes.names(run_dir) == ["xray"] and processes.running(run_dir, "model") is None

        again = steps.deploy_model(settings, "1", use_case=IMAGE)
        assert again.services[0]["started"] is False and again.services[0]["pid"] == service["pid"]
        assert again.predictions == first.predictions
    finally:
        processes.stop_all(run_dir)
    assert processes.names(run_dir) == []
