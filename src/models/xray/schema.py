"""The shape of the xray use case: its classes, the image bounds it accepts, the model's input size."""

from __future__ import annotations

MODEL_NAME = "xray"

# Class order is the model's output order; the raw layout names a folder after each class.
CLASSES: tuple[str, ...] = ("normal", "pneumonia")
POSITIVE_CLASS = "pneumonia"

# Raw images: raw/xray/YYYY/MM/DD/<class>/<name>.png (PNG or JPEG, any file name).
RAW_PREFIX = "raw/xray"
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")

# Bounds on what is accepted as a scan (width and height, pixels): smaller is not a chest
# film, larger is not what the generator or a typical downsampled data set produces, and a
# bound keeps one request from decoding a 100-megapixel bomb.
MIN_SIDE = 64
MAX_SIDE = 4096
# Compressed bytes per image (a 4096 px 8-bit PNG is well under this).
MAX_IMAGE_BYTES = 8 * 1024 * 1024

# The model sees one grayscale channel at this square size, scaled to [0, 1].
IMAGE_SIZE = 128
CHANNELS = 1
