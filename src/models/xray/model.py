"""The xray classifier's fast call path and the MLflow pyfunc wrapper that serves it on image bytes."""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.xray.images import ImageError, model_input_from_bytes
from models.xray.schema import CHANNELS, CLASSES, IMAGE_SIZE, POSITIVE_CLASS

if TYPE_CHECKING:  # heavy imports stay inside functions: this module is imported by DAG tasks
    import keras
    import mlflow.models

KERAS_FILE = "model.keras"
# Class order (the model's output order) and input size, readable without Keras.
CLASSES_FILE = "classes.json"
# The pyfunc's one input column: PNG/JPEG bytes, or the same bytes as base64 text (JSON clients).
IMAGE_COLUMN = "image"


class XrayModel:
    """Loaded classifier with a fast call path; shared by the MLflow pyfunc wrapper and the model server."""

    def __init__(self, keras_model: keras.Model, classes: Sequence[str] = CLASSES, image_size: int = IMAGE_SIZE):
        import tensorflow as tf

        self.keras_model = keras_model
        self.classes = tuple(classes)
        self.image_size = int(image_size)
        # A traced function with a fixed signature: Keras' model.predict() builds a data pipeline on
        # every call; a traced tf.function is one graph call, retraced never (batch size is None).
        spec = tf.TensorSpec(shape=(None, self.image_size, self.image_size, CHANNELS), dtype=tf.float32, name="image")
        self._call = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])

    @classmethod
    def load(cls, model_dir: str | Path) -> XrayModel:
        import keras

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / CLASSES_FILE).read_text(encoding="utf-8"))
        return cls(
            keras.models.load_model(model_dir / KERAS_FILE, compile=False),
            meta["classes"],
            meta.get("image_size", IMAGE_SIZE),
        )

    @property
    def positive_index(self) -> int:
        return self.classes.index(POSITIVE_CLASS) if POSITIVE_CLASS in self.classes else len(self.classes) - 1

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 [n, len(classes)], rows summing to 1, for model inputs [n, S, S, 1]."""
        x = np.asarray(x, dtype=np.float32)
        expected = (self.image_size, self.image_size, CHANNELS)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"expected a batch of shape (n, {', '.join(map(str, expected))}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        out = self._call(x).numpy().astype(np.float32)
        if out.shape[-1] == 1 and len(self.classes) == 2:  # a sigmoid head: P(positive) only
            p = out[:, 0]
            out = np.stack([1 - p, p] if self.positive_index == 1 else [p, 1 - p], axis=1)
        return out

    def predict_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        """Class probabilities for PNG/JPEG files; raises ImageError (naming the image) on a bad one."""
        inputs = []
        for i, data in enumerate(images):
            try:
                inputs.append(model_input_from_bytes(data))
            except ImageError as exc:
                raise ImageError(f"image {i}: {exc}") from None
        if not inputs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.predict_batch(np.stack(inputs))


def as_image_bytes(value: Any) -> bytes:
    """A pyfunc cell as raw image bytes: bytes pass through, text is base64 (as JSON carries bytes)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("image text is not valid base64") from None
    raise ImageError(f"image must be bytes or base64 text, got {type(value).__name__}")


def save_model_files(keras_model: keras.Model, directory: Path, *, classes: Sequence[str] = CLASSES) -> Path:
    """Write the Keras file and the class order + input size into `directory` (the pyfunc's artifact,
    so the server finds them wherever the model is downloaded)."""
    classes = list(classes)
    outputs = keras_model.output_shape[-1]
    if outputs != len(classes) and not (outputs == 1 and len(classes) == 2):
        raise ValueError(f"the model has {outputs} outputs but {len(classes)} classes were given: {classes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keras_model.save(directory / KERAS_FILE)
    size = keras_model.input_shape[1] or IMAGE_SIZE
    meta = {"classes": classes, "image_size": int(size), "channels": CHANNELS, "positive_class": POSITIVE_CLASS}
    (directory / CLASSES_FILE).write_text(json.dumps(meta, indent=1), "utf-8")
    return directory


def predict_frame(model: XrayModel, model_input: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc's answer: class probabilities per row of the `image` column (bytes or base64 text)."""
    if IMAGE_COLUMN not in model_input:
        raise ImageError(f"the input needs a column {IMAGE_COLUMN!r} of PNG/JPEG bytes or base64 text")
    probs = model.predict_bytes([as_image_bytes(v) for v in model_input[IMAGE_COLUMN]])
    return pd.DataFrame(probs, columns=list(model.classes), index=model_input.index)


def _pyfunc_class():
    # Built when logging, so importing this module does not import MLflow (DAG parse time).
    from models.packaging import pyfunc_class

    return pyfunc_class("XrayPyfunc", XrayModel.load, predict_frame)


def model_code_folder(work_dir: Path) -> Path:
    """A `models` package holding only this use case, for MLflow to copy into the model's code/ folder."""
    from models.packaging import model_code_folder as packaged_code

    return packaged_code(Path(__file__).resolve().parent, work_dir)


def _pyfunc_kwargs(keras_model: keras.Model, classes: Sequence[str], work_dir: Path) -> dict[str, Any]:
    """Everything mlflow.pyfunc.save_model and log_model need, with the model files written under `work_dir`."""
    import PIL
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from models.packaging import pip_requirements

    model_dir = save_model_files(keras_model, work_dir / "model_files", classes=classes)
    # Stated rather than inferred from an example: an example of raw bytes does not survive
    # MLflow's JSON example serialisation, and the schema is fixed by the use case anyway.
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
        outputs=Schema([ColSpec("float", name) for name in classes]),
    )
    return {
        "python_model": _pyfunc_class()(),
        "artifacts": {"model_dir": str(model_dir)},
        # Only this use case's package travels with the model (code/models/...).
        "code_paths": [str(model_code_folder(work_dir))],
        "signature": signature,
        "pip_requirements": pip_requirements(f"pillow=={PIL.__version__}"),
    }


def save_pyfunc_model(
    keras_model: keras.Model, path: Path, *, classes: Sequence[str] = CLASSES, work_dir: Path | None = None
) -> Path:
    """Save an MLflow pyfunc model folder at `path` (used by tests and benchmarks, no server needed)."""
    from models import packaging

    with tempfile.TemporaryDirectory(prefix="xray-model-") as scratch:
        return packaging.save_pyfunc_model(path, _pyfunc_kwargs(keras_model, classes, Path(work_dir or scratch)))


def log_pyfunc_model(
    keras_model: keras.Model, *, registered_model_name: str | None = None, classes: Sequence[str] = CLASSES,
    work_dir: Path | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log the model to the active MLflow run (and register it when a name is given)."""
    from models import packaging

    with tempfile.TemporaryDirectory(prefix="xray-model-") as scratch:
        kwargs = _pyfunc_kwargs(keras_model, classes, Path(work_dir or scratch))
        return packaging.log_pyfunc_model(kwargs, registered_model_name)


def load_served_model(model_uri: str) -> tuple[XrayModel, Any]:
    """Load an MLflow model by URI and return its fast path plus the pyfunc (for its metadata)."""
    from models import packaging

    return packaging.load_served_model(model_uri)
