"""The xray model's contract with the server: files it is saved as, its fast path, and the pyfunc on image bytes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models.xray.schema import CLASSES, IMAGE_SIZE


def png(side: int = 150, mode: str = "L", seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((side, side + 10)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode != "L" else image).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def keras_model():
    from models.xray.architectures import build

    return build("small_cnn", width=4)


def test_saved_files_load_with_their_classes_and_size(keras_model, tmp_path):
    from models.xray.model import XrayModel, save_model_files

    save_model_files(keras_model, tmp_path)
    loaded = XrayModel.load(tmp_path)
    assert loaded.classes == CLASSES and loaded.image_size == IMAGE_SIZE
    x = np.random.default_rng(1).random((3, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    probs = loaded.predict_batch(x)
    assert probs.shape == (3, len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, keras_model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_a_batch_of_the_wrong_shape_is_refused_with_the_shape(keras_model):
    from models.xray.model import XrayModel

    with pytest.raises(ValueError, match=r"\(n, 128, 128, 1\), got \(2, 64, 64, 1\)"):
        XrayModel(keras_model).predict_batch(np.zeros((2, 64, 64, 1), np.float32))


def test_class_count_must_match_the_model(keras_model, tmp_path):
    from models.xray.model import save_model_files

    with pytest.raises(ValueError, match="2 outputs but 3 classes"):
        save_model_files(keras_model, tmp_path, classes=("a", "b", "c"))


def test_the_pyfunc_takes_bytes_and_base64_and_names_a_bad_image(keras_model, tmp_path):
    import mlflow.pyfunc

    from models.xray.images import ImageError
    from models.xray.model import XrayModel, save_pyfunc_model

    path = save_pyfunc_model(keras_model, tmp_path / "pyfunc")
    assert sorted(p.name for p in (path / "code" / "models").iterdir()) == ["__init__.py", "xray"]
    pyfunc = mlflow.pyfunc.load_model(str(path))
    images = [png(seed=1), png(seed=2, fmt="JPEG")]
    frame = pd.DataFrame({"image": [images[0], base64.b64encode(images[1]).decode()]})
    out = pyfunc.predict(frame)
    assert list(out.columns) == list(CLASSES) and len(out) == 2
    expected = XrayModel(keras_model).predict_bytes(images)
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-5, atol=1e-6)

    with pytest.raises(ImageError, match="image 1: image mode RGB is not grayscale"):
        pyfunc.predict(pd.DataFrame({"image": [images[0], png(mode="RGB")]}))
    with pytest.raises(ImageError, match="not valid base64"):
        pyfunc.predict(pd.DataFrame({"image": ["%%%"]}))


# Trains in a child process: the failure this guards against is a native crash (heap corruption in TF 2.21's
# oneDNN backprop of a strided 1x1 convolution at small widths), which would take pytest down with it.
_TRAIN_EVERY_ARCHITECTURE = """
import numpy as np
from models.xray.architectures import ARCHITECTURES, build
x = np.random.default_rng(0).random((64, 128, 128, 1), dtype=np.float32)
y = (np.arange(64) % 2).astype(np.int32)
for name in ARCHITECTURES:
    for width in (4, 8):
        build(name, width=width).fit(x, y, batch_size=32, epochs=2, verbose=0)
        print(name, width, "trained", flush=True)
"""


def test_every_architecture_trains_at_small_widths_without_crashing():
    import os
    import subprocess
    import sys

    from tests.support.processes import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", _TRAIN_EVERY_ARCHITECTURE], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.count("trained") == 6
