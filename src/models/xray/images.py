"""Decoding and normalising scans: one function for training, evaluation and serving, so all three see the
same pixels."""

from __future__ import annotations

import io

import numpy as np

from models.xray.schema import CHANNELS, IMAGE_SIZE, MAX_IMAGE_BYTES, MAX_SIDE, MIN_SIDE

# Pillow modes taken as grayscale scans: 8/16-bit gray and gray+alpha. Colour is refused:
# a colour photo is not a scan, and silently averaging it would hide a wrong file.
GRAYSCALE_MODES = frozenset({"L", "LA", "I;16", "I;16B", "I;16L", "I"})
FORMATS = ("PNG", "JPEG")


class ImageError(ValueError):
    """A file or request body that is not an acceptable scan; the message says what is wrong."""


def decode_image(data: bytes, *, allow_colour: bool = False) -> np.ndarray:
    """An image's bytes as a (height, width) uint8 array; raises ImageError naming the defect.

    `allow_colour` converts RGB/RGBA/P images to gray instead of refusing them (for the loader of a
    real data set, some of which store gray scans as RGB)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("empty image: 0 bytes")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image: the bytes are neither PNG nor JPEG") from None
    if image.format not in FORMATS:
        raise ImageError(f"image format {image.format} is not accepted; send PNG or JPEG")
    width, height = image.size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ImageError(f"image is {width}x{height} px; each side must be {MIN_SIDE}-{MAX_SIDE} px")
    if image.mode not in GRAYSCALE_MODES and not allow_colour:
        raise ImageError(f"image mode {image.mode} is not grayscale; send a single-channel (L) scan")
    try:
        image.load()  # decoding happens here: a truncated file fails now, not later
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt image: {exc}") from None
    if image.mode.startswith("I"):
        # 16/32-bit gray: scale the used range to 8 bits rather than clipping it.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255 if high > low else np.zeros_like(pixels)
        return scaled.round().astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def to_model_pixels(gray: np.ndarray) -> np.ndarray:
    """A (height, width) uint8 scan resized to the model's (IMAGE_SIZE, IMAGE_SIZE) uint8 pixels.

    What the prepared TFRecords store (a quarter of the bytes of float32); dividing by 255 gives
    exactly to_model_input's values, so training reads the pixels serving computes.
    """
    from PIL import Image

    if gray.ndim != 2:
        raise ImageError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    resized = Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def to_model_input(gray: np.ndarray) -> np.ndarray:
    """A (height, width) uint8 scan as the model's (IMAGE_SIZE, IMAGE_SIZE, 1) float32 input in [0, 1]."""
    return (to_model_pixels(gray).astype(np.float32) / 255.0).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


def model_input_from_bytes(data: bytes) -> np.ndarray:
    """decode_image then to_model_input: what the server does with one uploaded scan."""
    return to_model_input(decode_image(data))
