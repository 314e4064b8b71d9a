"""A model registered before the re-layout (its pickle names `tasks.model`) still loads and predicts here."""

from __future__ import annotations

import json
import math
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

import tasks
from tests.support.processes import REPO_ROOT

DATA = REPO_ROOT / "src" / "tests" / "data"
ARCHIVE = DATA / "legacy_model.tar.gz"
FOLDER = DATA / "legacy_model"


@pytest.fixture(scope="module")
def legacy_model_dir(tmp_path_factory) -> Path:
    """The model folder saved by the pre-refactor code: unpacked from the archive, or the folder itself."""
    if ARCHIVE.is_file():
        target = tmp_path_factory.mktemp("legacy")
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(target, filter="data")
        return target / "legacy_model"
    assert FOLDER.is_dir(), f"the legacy model fixture is missing: neither {ARCHIVE} nor {FOLDER} exists"
    return FOLDER


@pytest.fixture
def restored_sys_path(monkeypatch):
    # Loading prepends the model's code/ folder to sys.path; later tests must not import from it.
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_the_legacy_model_loads_through_the_tasks_model_shim_and_predicts(legacy_model_dir, restored_sys_path):
    import mlflow.pyfunc

    from models.wachttijden.model import WachttijdenModel

    example = json.loads((legacy_model_dir / "input_example.json").read_text())
    rows = pd.DataFrame(example["data"], columns=example["columns"])
    model = mlflow.pyfunc.load_model(str(legacy_model_dir))
    # `tasks` was imported from src/ before loading, so the pickle's `tasks.model` is the shim,
    # not the old copy bundled in the model's code/ folder.
    assert Path(tasks.__file__).parent == REPO_ROOT / "src" / "tasks"
    assert Path(sys.modules["tasks.model"].__file__) == REPO_ROOT / "src" / "tasks" / "model.py"
    assert isinstance(model.unwrap_python_model().model, WachttijdenModel)

    predictions = model.predict(rows)
    values = predictions["predictions"].tolist()
    assert len(values) == len(rows) == 5
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_the_model_server_serves_the_legacy_model(legacy_model_dir, tmp_path):
    """In the serving environment no `tasks` package is imported: the model's own bundled code/ serves it."""
    import requests

    from tests.serving.servers import SERVING_PYTHON, model_server

    assert SERVING_PYTHON.exists(), "run scripts/setup.sh dev: the serving environment is missing"
    example = json.loads((legacy_model_dir / "input_example.json").read_text())
    columns = list(zip(*example["data"], strict=True))
    body = {
        "inputs": [
            {"name": name, "datatype": "BYTES", "shape": [len(values)], "data": list(values)}
            for name, values in zip(example["columns"], columns, strict=True)
        ]
    }
    row = dict(zip(example["columns"], example["data"][0], strict=True))
    with model_server(legacy_model_dir, tmp_path, name="legacy") as server:
        response = requests.post(f"{server.url}/v2/models/wachttijden/infer", json=body, timeout=30)
        explained = requests.post(f"{server.url}/v1/models/wachttijden:explain", json={"instances": [row]}, timeout=30)
        # Its out-of-vocabulary bucket was never trained, so no feature is open for it: refused as before.
        unseen = requests.post(
            f"{server.url}/v1/models/wachttijden:predict",
            json={"instances": [{**row, "SPECIALISME": "Nieuw specialisme"}]},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [5] and all(math.isfinite(v) for v in output["data"])
    assert explained.status_code == 501, explained.text
    assert "has no background sample" in explained.json()["error"]
    assert unseen.status_code == 400, unseen.text
    assert "SPECIALISME" in unseen.json()["error"] and "Nieuw specialisme" in unseen.json()["error"]
