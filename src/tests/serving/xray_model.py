"""A tiny xray model whose answer is known by construction, saved through the use case's own save_pyfunc_model,
plus scans to send it. For serving tests and bench/xray_serving.py.

The model is Flatten -> Dense(2, softmax) with set weights: the pneumonia logit is `GAIN` times the mean
brightness of one region (REGION) minus a bias, the normal logit 0. So a scan that is bright in REGION is
"pneumonia", a dark one "normal", and occluding REGION (and nothing else) changes the score: the heat map's
peak must lie there. Real layers, real Keras file, real MLflow pyfunc; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from models.xray.schema import IMAGE_SIZE

# Rows and columns (of the 128 px model input) the model looks at.
REGION = (slice(32, 64), slice(72, 104))
GAIN = 12.0
BIAS = 6.0  # a region of mean brightness 0.5 is 50/50


def build_region_model():
    import keras

    weights = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    weights[REGION] = GAIN / weights[REGION].size
    kernel = np.stack([np.zeros(IMAGE_SIZE * IMAGE_SIZE, np.float32), weights.reshape(-1)], axis=1)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    dense = keras.layers.Dense(2, activation="softmax", name="classes")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([kernel, np.array([0.0, -BIAS], np.float32)])
    return model


def expected_probabilities(model_inputs: np.ndarray) -> np.ndarray:
    """What the region model answers for model inputs [n, S, S, 1], computed without it."""
    logit = GAIN * model_inputs[:, REGION[0], REGION[1], 0].mean(axis=(1, 2)) - BIAS
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], axis=1)


def recipe_digest() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2] / "models"
    for path in (root / "packaging.py", *sorted((root / "xray").glob("*.py")), Path(__file__)):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def saved_region_model(root: Path) -> Path:
    """The saved pyfunc folder under `root`, built once while the sources are unchanged."""
    from models.xray.model import save_pyfunc_model
    from tests.serving.servers import saved_once

    return saved_once(root / f"xray-{recipe_digest()}" / "model",
                      lambda model_dir, work_dir: save_pyfunc_model(build_region_model(), model_dir, work_dir=work_dir))


def scan_png(bright: bool, *, size: int = 256, seed: int = 0, mode: str = "L") -> bytes:
    """A noisy grey scan; `bright` lights up the model's REGION (scaled to `size`)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.normal(70, 12, size=(size, size)).clip(0, 255)
    if bright:
        scale = size / IMAGE_SIZE
        rows = slice(int(REGION[0].start * scale), int(REGION[0].stop * scale))
        cols = slice(int(REGION[1].start * scale), int(REGION[1].stop * scale))
        pixels[rows, cols] = rng.normal(230, 8, size=pixels[rows, cols].shape).clip(0, 255)
    image = Image.fromarray(pixels.astype(np.uint8))
    if mode != "L":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
