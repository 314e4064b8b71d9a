"""The wachttijden Keras model and the MLflow pyfunc wrapper that serves it on raw columns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES

if TYPE_CHECKING:  # heavy imports stay inside functions: this module is imported by DAG tasks
    import keras
    import mlflow.models

# Written next to the Keras file so the server can check categories without Keras.
VOCABULARIES_FILE = "vocabularies.json"
KERAS_FILE = "model.keras"
# Optional files (models logged before they existed have neither): the features whose
# out-of-vocabulary bucket was trained, and the training rows explanations are measured against.
OPEN_FEATURES_FILE = "open_features.json"
BACKGROUND_FILE = "background.json"
# Any string outside a vocabulary takes StringLookup's one OOV index; this one reads as what it is.
OOV_TOKEN = "[UNK]"

Columns = Mapping[str, Sequence[str]]


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


def mask_for_oov(frame: pd.DataFrame, features: Sequence[str], fraction: float, seed: int) -> pd.DataFrame:
    """A copy of `frame` with `fraction` of the rows of each of `features` set to OOV_TOKEN.

    The vocabulary holds every training value, so without this the OOV bucket's weights never
    move from their random start and an unseen value would get an arbitrary prediction. Masked
    rows teach it the waiting time of "some specialism", close to the average over specialisms.
    """
    rng = np.random.default_rng(seed)
    masked = frame.copy()
    for name in features:
        rows = rng.random(len(masked)) < fraction
        masked[name] = masked[name].astype(str).where(~rows, OOV_TOKEN)
    return masked


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

    def __init__(
        self,
        keras_model: keras.Model,
        vocabularies: Mapping[str, Sequence[str]],
        *,
        open_features: Sequence[str] = (),
        background: Columns | None = None,
    ):
        import tensorflow as tf

        self.keras_model = keras_model
        self.vocabularies = {name: list(values) for name, values in vocabularies.items()}
        self._known = {name: frozenset(values) for name, values in self.vocabularies.items()}
        # Features whose unseen values this model answers through its trained OOV bucket.
        self.open_features = tuple(open_features)
        # Training rows for explanations (None: the model was logged without them).
        self.background = None if background is None else {name: list(background[name]) for name in FEATURES}
        # A traced function with a fixed signature: Keras' model.predict() builds a data pipeline on
        # every call (~80 ms for a small batch); calling a traced tf.function takes well under 1 ms.
        signature = {name: tf.TensorSpec(shape=(None, 1), dtype=tf.string, name=name) for name in FEATURES}
        self._call = tf.function(lambda inputs: keras_model(inputs, training=False), input_signature=[signature])

    @classmethod
    def load(cls, model_dir: str | Path) -> WachttijdenModel:
        import keras

        model_dir = Path(model_dir)
        vocabularies = json.loads((model_dir / VOCABULARIES_FILE).read_text(encoding="utf-8"))
        return cls(
            keras.models.load_model(model_dir / KERAS_FILE, compile=False),
            vocabularies,
            open_features=_read_optional(model_dir / OPEN_FEATURES_FILE) or (),
            background=_read_optional(model_dir / BACKGROUND_FILE),
        )

    def unknown_categories(self, columns: Mapping[str, Any]) -> dict[str, list[str]]:
        """Values per feature that the model never saw in training (sorted, de-duplicated).

        The one check of categories against the model's vocabularies, cheap enough for every
        request: one set test per feature when the columns are lists of str.
        """
        unknown = {}
        for name in FEATURES:
            known, values = self._known[name], columns[name]
            # Checked request columns are lists of str: a set test settles the usual all-known case
            # without building an array; anything else (or any miss) takes the general path.
            if isinstance(values, list) and known.issuperset(values):
                continue
            missing = sorted({str(v) for v in np.asarray(values).reshape(-1)} - known)
            if missing:
                unknown[name] = missing
        return unknown

    def predict_columns(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Predicted waiting time in weeks, one float32 per row."""
        return self._call(to_model_inputs(columns)).numpy().reshape(-1).astype(np.float32)


def _read_optional(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def save_model_files(
    directory: Path,
    keras_model: keras.Model,
    vocabularies: Mapping[str, Sequence[str]],
    *,
    open_features: Sequence[str] = (),
    background: Columns | None = None,
) -> Path:
    """Write the Keras file, the vocabularies, and the open features and background sample if any, into
    `directory` (the pyfunc's artifact, so the server finds them wherever the model is downloaded)."""
    directory.mkdir(parents=True, exist_ok=True)
    keras_model.save(directory / KERAS_FILE)
    (directory / VOCABULARIES_FILE).write_text(json.dumps(vocabularies, ensure_ascii=False, indent=1), "utf-8")
    unknown = sorted(set(open_features) - set(FEATURES))
    if unknown:
        raise ValueError(f"open features {unknown} are not features of this model: {list(FEATURES)}")
    (directory / OPEN_FEATURES_FILE).write_text(json.dumps(list(open_features)), "utf-8")
    if background is not None:
        rows = {name: [str(v) for v in background[name]] for name in FEATURES}
        if not rows[FEATURES[0]]:
            raise ValueError("the background sample is empty")
        (directory / BACKGROUND_FILE).write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    return directory


def predict_frame(model: WachttijdenModel, model_input: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc's answer: the predicted waiting time per row, in a `predictions` column."""
    return pd.DataFrame({"predictions": model.predict_columns(model_input)})


def _pyfunc_class():
    # Built when logging, so importing this module does not import MLflow (DAG parse time).
    from models.packaging import pyfunc_class

    return pyfunc_class("WachttijdenPyfunc", WachttijdenModel.load, predict_frame)


def model_code_folder(work_dir: Path) -> Path:
    """A `models` package holding only this use case, for MLflow to copy into the model's code/ folder."""
    from models.packaging import model_code_folder as packaged_code

    return packaged_code(Path(__file__).resolve().parent, work_dir)


def _pyfunc_kwargs(
    keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]], input_example: pd.DataFrame, work_dir: Path,
    **extras: Any,
) -> dict[str, Any]:
    """Everything mlflow.pyfunc.save_model and log_model need, with the model files written under `work_dir`.

    `extras` are save_model_files' open_features and background.
    """
    from mlflow.models import infer_signature

    from models.packaging import pip_requirements

    model_dir = save_model_files(work_dir / "model_files", keras_model, vocabularies, **extras)
    example = input_example[list(FEATURES)].astype(str).head(5).reset_index(drop=True)
    predictions = pd.DataFrame({"predictions": WachttijdenModel(keras_model, vocabularies).predict_columns(example)})
    return {
        "python_model": _pyfunc_class()(),
        "artifacts": {"model_dir": str(model_dir)},
        # Only this use case's package travels with the model (code/models/...), so any Python
        # with the serving requirements can unpickle `models.wachttijden.model`.
        "code_paths": [str(model_code_folder(work_dir))],
        "signature": infer_signature(example, predictions),
        "input_example": example,
        "pip_requirements": pip_requirements(),
    }


def save_pyfunc_model(
    path: Path, keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]], input_example: pd.DataFrame,
    *, work_dir: Path, open_features: Sequence[str] = (), background: Columns | None = None,
) -> Path:
    """Save an MLflow pyfunc model folder at `path` (used by tests and benchmarks, no server needed)."""
    from models import packaging

    kwargs = _pyfunc_kwargs(
        keras_model, vocabularies, input_example, work_dir, open_features=open_features, background=background
    )
    return packaging.save_pyfunc_model(path, kwargs)


def log_pyfunc_model(
    keras_model: keras.Model, vocabularies: Mapping[str, Sequence[str]], input_example: pd.DataFrame,
    *, work_dir: Path, registered_model_name: str | None = None, open_features: Sequence[str] = (),
    background: Columns | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log the model to the active MLflow run (and register it when a name is given)."""
    from models import packaging

    kwargs = _pyfunc_kwargs(
        keras_model, vocabularies, input_example, work_dir, open_features=open_features, background=background
    )
    return packaging.log_pyfunc_model(kwargs, registered_model_name)


def load_served_model(model_uri: str) -> tuple[WachttijdenModel, Any]:
    """Load an MLflow model by URI and return its fast path plus the pyfunc (for its metadata)."""
    from models import packaging

    return packaging.load_served_model(model_uri)
