"""The MLflow pyfunc plumbing every use case shares: the pyfunc class around its fast-path model, its own package
as code, pinned serving requirements, and saving, logging and loading.

Used when logging a model and by the model server, never by a logged model itself: the pyfunc class built
here is pickled by value and refers only to its use case's load and predict functions, so a model carries
its own package (`model_code_folder`) and not this module.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def model_code_folder(package_dir: Path, work_dir: Path) -> Path:
    """A `models` package holding only one use case, for MLflow to copy into the model's code/ folder.

    Loading the pickled pyfunc imports `models.<use case>.model`; the model carries exactly that
    package (not the pipelines' data-lake, deploy or Kubernetes code, nor this module: use cases
    import it only when logging), so any Python with the serving requirements can load it.
    """
    target = work_dir / "code" / "models"
    if target.exists():
        shutil.rmtree(target)
    (target / package_dir.name).mkdir(parents=True)
    shutil.copy2(package_dir.parent / "__init__.py", target / "__init__.py")
    for source in package_dir.glob("*.py"):
        shutil.copy2(source, target / package_dir.name / source.name)
    return target


def pip_requirements(*extra: str) -> list[str]:
    """The model's pinned requirements (stated: inferring them costs ~10 s and lists both
    tensorflow and tensorflow-cpu)."""
    import keras
    import mlflow
    import tensorflow as tf

    return [
        f"mlflow=={mlflow.__version__}",
        f"tensorflow-cpu=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        *extra,
    ]


def pyfunc_class(name: str, load: Callable[[str], Any], predict: Callable[[Any, pd.DataFrame], pd.DataFrame]) -> type:
    """An mlflow.pyfunc.PythonModel subclass: load_context loads the fast-path model with `load(model_dir)` from
    the `model_dir` artifact, predict answers `predict(model, frame)`.

    `load` and `predict` must be importable functions of the use case's package: they are what the pickled
    class refers to (the class and its methods, made here at run time, are pickled by value).
    """
    import mlflow.pyfunc

    def load_context(self, context):
        self.model = load(context.artifacts["model_dir"])

    def predict_frame(self, context, model_input, params=None):
        return predict(self.model, model_input)

    return type(name, (mlflow.pyfunc.PythonModel,), {
        "__doc__": f"MLflow entry point of {name}: `mlflow.pyfunc.load_model(uri).predict(frame)` goes through this.",
        "__qualname__": f"pyfunc_class.<locals>.{name}",  # never looked up by name: pickled by value
        "load_context": load_context,
        "predict": predict_frame,
    })


def save_pyfunc_model(path: Path, pyfunc_kwargs: dict[str, Any]) -> Path:
    """Save an MLflow pyfunc model folder at `path` (tests and benchmarks: no tracking server needed)."""
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(path=str(path), **pyfunc_kwargs)
    return Path(path)


def log_pyfunc_model(pyfunc_kwargs: dict[str, Any], registered_model_name: str | None = None):
    """Log the model to the active MLflow run as `model` (and register it when a name is given); its ModelInfo."""
    import mlflow.pyfunc

    return mlflow.pyfunc.log_model(name="model", registered_model_name=registered_model_name, **pyfunc_kwargs)


def load_served_model(model_uri: str) -> tuple[Any, Any]:
    """Load an MLflow model by URI: its use case's fast path (what load_context loaded) and the pyfunc (metadata)."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(model_uri)
    return pyfunc.unwrap_python_model().model, pyfunc
