"""The wachttijden Keras model and the MLflow pyfunc wrapper that serves it on raw columns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.schema import FEATURES

if TYPE_CHECKING:  # heavy imports stay inside functions: this module is imported by DAG tasks
    import keras
    import mlflow.models

# Written next to the Keras file so the server can check categories without Keras.
VOCABULARIES_FILE = "vocabularies.json"
KERAS_FILE = "model.keras"


def build_model(
    vocabularies: Mapping[str, Sequence[str]],
    *,
    hidden_units: Sequence[int] = (64, 32),
    learning_rate: float = 1e-3,
    target_mean: float = 0.0,
) -> keras.Model:
    """A regression network whose category encoding is part of the model, so it takes raw strings."""
    import keras

    inputs = {name: keras.Input(shape=(1,), dtype="string", name=name) for name in FEATURES}
    encoded = [
        keras.layers.StringLookup(
            vocabulary=list(vocabularies[name]), output_mode="one_hot", num_oov_indices=1, name=f"{name}_onehot"
        )(inputs[name])
        for name in FEATURES
    ]
    x = keras.layers.Concatenate(name="features")(encoded)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    # Starting the output at the mean target shortens training and avoids early huge losses.
    output = keras.layers.Dense(
        1, name="wachttijd", bias_initializer=keras.initializers.Constant(target_mean)
    )(x)
    model = keras.Model(inputs=inputs, outputs=output, name="wachttijden")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="mse",
        metrics=[keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")],
    )
    return model


def to_model_inputs(frame: pd.DataFrame | Mapping[str, Any]) -> dict[str, Any]:
    """Column arrays to the (n, 1) string tensors the model takes.

    Keras 3 cannot take numpy object arrays of str ("Invalid dtype: object"); tf.constant can.
    """
    import tensorflow as tf

    return {
        name: tf.constant(np.asarray(frame[name]).astype(str).reshape(-1, 1), dtype=tf.string) for name in FEATURES
    }


class WachttijdenModel:
    """Loaded model with a fast call path; shared by the MLflow pyfunc wrapper and the model server."""

    def __init__(self, keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]]):
        import tensorflow as tf

        self.keras_model = keras_model
        self.vocabularies = {name: list(values) for name, values in vocabularies.items()}
        self._known = {name: frozenset(values) for name, values in self.vocabularies.items()}
        # A traced function with a fixed signature: model.predict() costs ~80 ms per call on
        # small batches, a tf.function call well under 1 ms (see STACK-NOTES).
        signature = {name: tf.TensorSpec(shape=(None, 1), dtype=tf.string, name=name) for name in FEATURES}
        self._call = tf.function(lambda inputs: keras_model(inputs, training=False), input_signature=[signature])

    @classmethod
    def load(cls, model_dir: str | Path) -> WachttijdenModel:
        import keras

        model_dir = Path(model_dir)
        vocabularies = json.loads((model_dir / VOCABULARIES_FILE).read_text(encoding="utf-8"))
        return cls(keras.models.load_model(model_dir / KERAS_FILE, compile=False), vocabularies)

    def unknown_categories(self, columns: Mapping[str, Any]) -> dict[str, list[str]]:
        """Values per feature that the model never saw in training (sorted, de-duplicated)."""
        unknown = {}
        for name in FEATURES:
            values = {str(v) for v in np.asarray(columns[name]).reshape(-1)}
            missing = sorted(values - self._known[name])
            if missing:
                unknown[name] = missing
        return unknown

    def predict_columns(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Predicted waiting time in weeks, one float32 per row."""
        return self._call(to_model_inputs(columns)).numpy().reshape(-1).astype(np.float32)


def save_model_files(directory: Path, keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]]) -> Path:
    """Write the Keras file and the vocabularies into `directory` (the pyfunc's artifact)."""
    directory.mkdir(parents=True, exist_ok=True)
    keras_model.save(directory / KERAS_FILE)
    (directory / VOCABULARIES_FILE).write_text(json.dumps(vocabularies, ensure_ascii=False, indent=1), "utf-8")
    return directory


def _pyfunc_class():
    # Defined lazily so importing this module does not import MLflow (DAG parse time).
    import mlflow.pyfunc

    class WachttijdenPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow entry point: `mlflow models serve` and `mlflow.pyfunc.load_model` go through this."""

        def load_context(self, context):
            self.model = WachttijdenModel.load(context.artifacts["model_dir"])

        def predict(self, context, model_input: pd.DataFrame, params=None):
            return pd.DataFrame({"predictions": self.model.predict_columns(model_input)})

    return WachttijdenPyfunc


def _pip_requirements() -> list[str]:
    # Stated explicitly: inferring them costs ~10 s and lists both tensorflow and tensorflow-cpu.
    import keras
    import mlflow
    import tensorflow as tf

    return [
        f"mlflow=={mlflow.__version__}",
        f"tensorflow-cpu=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def _pyfunc_kwargs(model_dir: Path, input_example: pd.DataFrame, wrapped: WachttijdenModel) -> dict[str, Any]:
    from mlflow.models import infer_signature

    example = input_example[list(FEATURES)].astype(str).head(5).reset_index(drop=True)
    predictions = pd.DataFrame({"predictions": wrapped.predict_columns(example)})
    return {
        "python_model": _pyfunc_class()(),
        "artifacts": {"model_dir": str(model_dir)},
        # The whole tasks package travels with the model, so the serving image can unpickle
        # `tasks.model` without the pipelines' code being installed there.
        "code_paths": [str(Path(__file__).parent)],
        "signature": infer_signature(example, predictions),
        "input_example": example,
        "pip_requirements": _pip_requirements(),
    }


def save_pyfunc_model(
    path: Path, keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]], input_example: pd.DataFrame,
    *, work_dir: Path,
) -> Path:
    """Save an MLflow pyfunc model folder at `path` (used by tests and benchmarks, no server needed)."""
    import mlflow.pyfunc

    model_dir = save_model_files(work_dir / "model_files", keras_model, vocabularies)
    kwargs = _pyfunc_kwargs(model_dir, input_example, WachttijdenModel(keras_model, vocabularies))
    mlflow.pyfunc.save_model(path=str(path), **kwargs)
    return path


def log_pyfunc_model(
    keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]], input_example: pd.DataFrame,
    *, work_dir: Path, registered_model_name: str | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log the model to the active MLflow run (and register it when a name is given)."""
    import mlflow.pyfunc

    model_dir = save_model_files(work_dir / "model_files", keras_model, vocabularies)
    kwargs = _pyfunc_kwargs(model_dir, input_example, WachttijdenModel(keras_model, vocabularies))
    return mlflow.pyfunc.log_model(name="model", registered_model_name=registered_model_name, **kwargs)


def load_served_model(model_uri: str) -> tuple[WachttijdenModel, Any]:
    """Load an MLflow model by URI and return its fast path plus the pyfunc (for its metadata)."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(model_uri)
    return pyfunc.unwrap_python_model().model, pyfunc
