"""What every use case's MLflow pyfunc carries: its own package as code, and pinned serving requirements.

Used when logging a model, never when loading one (so a logged model need not carry it)."""

from __future__ import annotations

import shutil
from pathlib import Path

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
