"""The xray classifiers trained side by side: a plain CNN, a MobileNet-style depthwise-separable net and a
small ResNet. All start from random weights (nothing is downloaded) and end in a softmax over CLASSES."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from models.xray.schema import CHANNELS, CLASSES, IMAGE_SIZE

if TYPE_CHECKING:
    import keras

# No BatchNorm: its moving statistics need hundreds of steps to settle, and a short run (tests, a
# few epochs on a few hundred images) then predicts one class at inference. These nets are shallow
# enough to train without it.


def _small_cnn(x, width: int):
    import keras

    L = keras.layers
    for i, filters in enumerate((width, width * 2, width * 4, width * 8)):
        x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
    return x


def _conv(x, filters: int, kernel: int, strides: int, name: str, activation: bool = True):
    import keras

    L = keras.layers
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{name}_conv")(x)
    return L.ReLU(name=f"{name}_relu")(x) if activation else x


def _mobilenet(x, width: int):
    import keras

    L = keras.layers
    x = _conv(x, width, 3, 2, "stem")
    # (output filters, stride) per depthwise-separable block, MobileNet v1's pattern at small width.
    for i, (mult, stride) in enumerate(((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2))):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", name=f"dw{i}")(x)
        x = L.ReLU(name=f"dw{i}_relu")(x)
        x = _conv(x, width * mult, 1, 1, f"pw{i}")
    return x


def _resnet(x, width: int):
    import keras

    L = keras.layers
    x = _conv(x, width, 3, 2, "stem")
    for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2))):
        shortcut = x
        y = _conv(x, width * mult, 3, stride, f"res{i}a")
        y = _conv(y, width * mult, 3, 1, f"res{i}b", activation=False)
        if stride != 1:
            # Downsample the shortcut by average pooling, then project with a stride-1 1x1 conv (ResNet-D).
            # A strided 1x1 conv here (the original ResNet) crashed TF 2.21's oneDNN backprop on CPU with heap
            # corruption at small widths (8 -> 16 channels): tests/models/test_xray_model.py trains it.
            shortcut = L.AveragePooling2D(stride, padding="same", name=f"res{i}down")(shortcut)
        if shortcut.shape[-1] != width * mult:  # project the shortcut to the new width
            shortcut = _conv(shortcut, width * mult, 1, 1, f"res{i}proj", activation=False)
        x = L.ReLU(name=f"res{i}_out")(L.Add(name=f"res{i}_add")([y, shortcut]))
    return x


# name -> (feature extractor, default width). Widths keep each net small enough to train on CPU.
ARCHITECTURES: dict[str, tuple[Callable, int]] = {
    "small_cnn": (_small_cnn, 16),
    "mobilenet": (_mobilenet, 16),
    "resnet": (_resnet, 16),
}


def build(name: str, *, width: int | None = None, learning_rate: float = 3e-3, dropout: float = 0.2) -> keras.Model:
    """A compiled classifier: (IMAGE_SIZE, IMAGE_SIZE, 1) in [0, 1] -> softmax over CLASSES."""
    import keras

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    features, default_width = ARCHITECTURES[name]
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS), name="image")
    # Standardise each scan (mean 0, sd 1 over its pixels): exposure differs from film to film, and on
    # raw [0, 1] pixels these nets sat at chance for epochs on a few hundred images.
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], name="standardise")(inputs)
    x = features(x, width or default_width)
    # Max, not average: the cue is local (a few opacities in the lung fields), and averaging the last map
    # over the whole film diluted it: with average pooling small_cnn sat at loss 0.69 (chance) for 12 epochs
    # on 320 images while ranking the test split by tiny differences; with max pooling it learns in a few.
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
