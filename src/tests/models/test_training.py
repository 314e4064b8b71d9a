"""The train task records the device it trained on, fails before training when a GPU is required and none is
visible, and logs what explanations need: a background sample inside the model and a feature-importance plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.wachttijden.schema import FEATURES, OPEN_FEATURES
from tasks.config import Settings
from tasks.data.datalake import open_datalake
from tasks.data.prepare import clean_validated, split_clean, validate_raw
from tasks.training.device import DEVICE_TAG, GpuUnavailable, describe_device, visible_gpu_names
from tasks.training.importance import BACKGROUND_ROWS
from tasks.training.train import train_candidate
from tests.conftest import isolate_mlflow_client, reset_mlflow_client
from tests.support.processes import REPO_ROOT

RAW = "wachttijden/wachttijden.csv"
TINY = {"name": "tiny", "hidden_units": [8], "epochs": 1, "batch_size": 512}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, small_raw_csv):
    """A data lake with one complete partition of the small generated data set."""
    lake = open_datalake(str(tmp_path_factory.mktemp("training") / "lake"))
    lake.write_bytes("raw", RAW, small_raw_csv.read_bytes())
    validate_raw(lake, RAW, "run=t")
    clean_validated(lake, "run=t")
    split_clean(lake, "run=t")
    return lake, "run=t"


@pytest.fixture(scope="module")
def trained(prepared, mlflow_server):
    """One tiny candidate trained and logged to the session's MLflow server: (result, client, server URL)."""
    import mlflow

    lake, partition = prepared
    with pytest.MonkeyPatch.context() as mp:
        isolate_mlflow_client(mp)
        try:
            result = train_candidate(lake, partition, TINY, tracking_uri=mlflow_server)
            yield result, mlflow.MlflowClient(mlflow_server), mlflow_server
        finally:
            reset_mlflow_client()


def test_require_gpu_fails_before_reading_data_or_training_when_no_gpu_is_visible(mlflow_client_env, tmp_path):
    if visible_gpu_names():
        pytest.skip("this machine has a GPU: the check would (rightly) pass")
    # The partition does not exist: only a check that runs before the data is read fails with GpuUnavailable.
    with pytest.raises(GpuUnavailable) as raised:
        train_candidate(
            open_datalake(str(tmp_path / "lake")), "run=absent", TINY,
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", require_gpu=True,
        )
    message = str(raised.value)
    assert "require_gpu is on but TensorFlow sees no GPU" in message
    assert "tf.config.list_physical_devices('GPU') is empty" in message
    assert "set the Airflow Variable require_gpu to false" in message


def test_the_run_is_tagged_with_the_device_it_trained_on(trained):
    result, client, _ = trained
    run = client.get_run(result["run_id"])
    assert run.data.tags[DEVICE_TAG] == describe_device(visible_gpu_names())
    if not visible_gpu_names():
        assert run.data.tags[DEVICE_TAG] == "CPU"


def test_device_names_for_the_tag():
    assert describe_device([]) == "CPU"
    assert describe_device(["NVIDIA A10"]) == "GPU:0 (NVIDIA A10)"
    assert describe_device(["NVIDIA A10", "NVIDIA A10"]) == "GPU:0 (NVIDIA A10, 2 GPUs visible)"


def test_the_logged_model_carries_its_background_sample_and_open_features(trained, tmp_path):
    import mlflow

    from models.wachttijden.model import WachttijdenModel

    result, client, uri = trained
    local = Path(mlflow.artifacts.download_artifacts(result["model_uri"], dst_path=str(tmp_path), tracking_uri=uri))
    model = WachttijdenModel.load(local / "artifacts" / "model_files")
    assert model.open_features == OPEN_FEATURES
    assert set(model.background) == set(FEATURES)
    assert len(model.background["SPECIALISME"]) == BACKGROUND_ROWS
    # Every background value is a training value (the OOV mask is not in the sample).
    for name in FEATURES:
        assert set(model.background[name]) <= set(model.vocabularies[name])
    assert client.get_run(result["run_id"]).data.params["oov_fraction"] == "0.02"


def test_a_global_feature_importance_is_logged_as_a_plot_and_numbers(trained, tmp_path):
    import mlflow

    result, client, uri = trained
    names = {artifact.path for artifact in client.list_artifacts(result["run_id"])}
    assert {"feature_importance.png", "feature_importance.json"} <= names

    def download(name: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(
            run_id=result["run_id"], artifact_path=name, dst_path=str(tmp_path), tracking_uri=uri
        ))

    assert download("feature_importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    importance = json.loads(download("feature_importance.json").read_text())
    assert list(importance) == list(FEATURES)
    assert all(value >= 0 for value in importance.values()) and max(importance.values()) > 0


def test_require_gpu_is_a_setting_read_like_the_others_and_off_by_default():
    assert Settings().require_gpu is False
    assert Settings.load({}.get).require_gpu is False
    assert Settings.load({"require_gpu": "true"}.get).require_gpu is True
    assert Settings.load({"require_gpu": "False"}.get).require_gpu is False
    with pytest.raises(ValueError, match="require_gpu"):
        Settings.load({"require_gpu": "sometimes"}.get)
    # Where the train task runs on the GPU node pool it must not quietly train on CPU; not on one machine.
    expected = {"dev": True, "prod": True, "local": False}
    for env, value in expected.items():
        variables = json.loads((REPO_ROOT / "variables" / env / "all.json").read_text())
        assert Settings.load(variables.get).require_gpu is value, env
