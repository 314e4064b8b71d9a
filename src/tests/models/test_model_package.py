"""A model logged the production way carries only its use case's code, and loads without the pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.small_model import CATEGORIES, generated_rows
from tests.support.processes import REPO_ROOT

USE_CASE = REPO_ROOT / "src" / "models" / "wachttijden"
# Loads the model where only the model folder is importable (no src/ on sys.path) and reports
# which project packages that took.
_LOAD_ELSEWHERE = """
import json, sys
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
predictions = model.predict(pd.DataFrame(json.loads(sys.argv[2])))
print(json.dumps({
    "rows": len(predictions),
    "packages": sorted({m.split(".")[0] for m in sys.modules} & {"models", "tasks", "pipelines", "serving"}),
    "model_file": sys.modules["models.wachttijden.model"].__file__,
}))
"""


def tiny_model():
    from models.wachttijden.model import build_model

    return build_model(CATEGORIES, hidden_units=(4,))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A tiny untrained wachttijden model saved through models.wachttijden.model.save_pyfunc_model."""
    from models.wachttijden.model import save_pyfunc_model

    root = tmp_path_factory.mktemp("package")
    frame = generated_rows(20, seed=3)
    return save_pyfunc_model(root / "model", tiny_model(), CATEGORIES, frame, work_dir=root / "work")


def assert_only_the_use_case_travels(model_dir: Path) -> None:
    code = model_dir / "code"
    files = sorted(p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file())
    expected = ["models/__init__.py", *sorted(f"models/wachttijden/{p.name}" for p in USE_CASE.glob("*.py"))]
    assert files == expected
    assert "models/wachttijden/model.py" in files and "models/wachttijden/schema.py" in files
    unwanted = ("tasks", "pipelines", "serving", "registry", "deploy", "datalake", "kubernetes", "train")
    assert not [f for f in files if any(word in f for word in unwanted)]


def test_the_code_folder_holds_only_the_models_package_with_the_use_case(saved_model):
    assert_only_the_use_case_travels(saved_model)


def test_a_model_logged_to_a_run_carries_the_same_code(mlflow_client_env, tmp_path):
    import mlflow

    from models.wachttijden.model import log_pyfunc_model

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    # Artifacts in tmp_path too (the default experiment would write ./mlruns in the working directory).
    experiment = mlflow.create_experiment("package", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_pyfunc_model(tiny_model(), CATEGORIES, generated_rows(20, seed=3), work_dir=tmp_path / "work")
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "downloaded"))
    assert_only_the_use_case_travels(Path(local))


def test_the_saved_model_loads_and_predicts_without_the_projects_source(saved_model, tmp_path):
    rows = generated_rows(3, seed=4).drop(columns="WACHTTIJD")
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_ELSEWHERE, str(saved_model), rows.to_json(orient="records")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"] == 3
    assert report["packages"] == ["models"]
    assert Path(report["model_file"]).is_relative_to(saved_model / "code")
