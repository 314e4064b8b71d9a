"""Turn V1 and V2 image inference requests into one checked model-input batch, or say exactly what is wrong.

Accepted (see the README, "Serving the image model"):
- V2, one input: BYTES holding PNG/JPEG files (base64 text in JSON; raw bytes over gRPC), shape [n] or
  [n, 1]; or FP32 model inputs, shape [n, S, S, 1] with values in [0, 1] (what to_model_input makes).
- V1: {"instances": [{"b64": "<base64 PNG/JPEG>"}, ...]}; an instance may add "class" (a class name) to
  choose which class :explain explains (default: the predicted one).
Every image goes through `models.xray.images`, the decoder training used, so serving sees the pixels
training saw. The log describes images by size and sha256, never by their pixels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.xray.images import ImageError, decode_image, to_model_input
from models.xray.model import as_image_bytes
from models.xray.schema import CHANNELS, MAX_IMAGE_BYTES
from serving.request_columns import RequestError, Tensor, TooManyRows

V1_KEYS = frozenset({"b64", "class"})


class TooLarge(RequestError):
    status_code = 413


@dataclass
class ImageBatch:
    """Checked model inputs [n, S, S, 1] float32, what the log says of each, and classes asked to explain."""

    inputs: np.ndarray
    described: list[dict[str, Any]]
    explain_classes: list[str | None] = field(default_factory=list)

    def log_inputs(self) -> dict[str, list[Any]]:
        """The prediction log's `inputs`: one column per property, one value per image (no pixels)."""
        keys = self.described[0].keys() if self.described else ()
        return {key: [d.get(key) for d in self.described] for key in keys}


def _count(n: int, max_images: int) -> None:
    if n == 0:
        raise RequestError("the request holds no image; send at least one")
    if n > max_images:
        raise TooManyRows(f"request has {n} images; this server accepts at most {max_images} per request")


def decode_file(index: int, data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """One PNG/JPEG file as a model input and its log description; 413/400 naming the image and the defect."""
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLarge(f"image {index} is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted per image")
    try:
        gray = decode_image(data)
    except ImageError as exc:
        raise RequestError(f"image {index}: {exc}") from None
    # to_model_input makes schema.IMAGE_SIZE inputs; the server refuses at load a model of another size.
    model_input = to_model_input(gray)
    described = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "width": int(gray.shape[1]), "height": int(gray.shape[0])}
    return model_input, described


def _file(index: int, value: Any) -> bytes:
    try:
        return as_image_bytes(value)
    except ImageError as exc:
        raise RequestError(f"image {index}: {exc}") from None


def batch_from_files(files: Sequence[Any], *, max_images: int) -> ImageBatch:
    """Base64 text or raw bytes per image -> a checked batch."""
    _count(len(files), max_images)
    decoded = [decode_file(i, _file(i, value)) for i, value in enumerate(files)]
    return ImageBatch(np.stack([d[0] for d in decoded]), [d[1] for d in decoded], [None] * len(decoded))


def _flat(values: Any) -> list[Any]:
    flat: list[Any] = []
    stack = [values]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def batch_from_tensor(tensor: Tensor, size: int, *, max_images: int) -> ImageBatch:
    """An FP32 tensor [n, size, size, 1] of model inputs -> a checked batch."""
    expected = f"[n, {size}, {size}, {CHANNELS}]"
    shape = tensor.shape
    if (not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) != 4
            or any(not isinstance(d, int) or isinstance(d, bool) for d in shape)
            or list(shape[1:]) != [size, size, CHANNELS]):
        raise RequestError(f"input {tensor.name!r}: an FP32 tensor must have shape {expected}, got {shape!r}")
    _count(shape[0], max_images)
    values = tensor.data.reshape(-1) if isinstance(tensor.data, np.ndarray) else _flat(tensor.data)
    if len(values) != math.prod(shape):
        raise RequestError(
            f"input {tensor.name!r}: shape {list(shape)} needs {math.prod(shape)} values but 'data' holds {len(values)}"
        )
    try:
        inputs = np.asarray(values, dtype=np.float32).reshape(shape)
    except (TypeError, ValueError):
        raise RequestError(f"input {tensor.name!r}: FP32 data must hold only numbers") from None
    if not np.isfinite(inputs).all() or inputs.min() < 0 or inputs.max() > 1:
        raise RequestError(
            f"input {tensor.name!r}: values must be finite and within [0, 1] (pixel / 255, as the model was trained)"
        )
    described = [{"tensor": f"{size}x{size}", "sha256": hashlib.sha256(image.tobytes()).hexdigest()}
                 for image in inputs]
    return ImageBatch(inputs, described, [None] * len(described))


def batch_from_v2(tensors: Sequence[Tensor], size: int, *, max_images: int) -> ImageBatch:
    """A V2 request's one input: BYTES files or FP32 model inputs."""
    if len(tensors) != 1:
        raise RequestError(
            f"request has {len(tensors)} inputs; send exactly one: BYTES PNG/JPEG files (base64 in JSON) "
            f"or FP32 model inputs [n, {size}, {size}, {CHANNELS}]"
        )
    tensor = tensors[0]
    datatype = str(tensor.datatype).upper()
    if datatype == "FP32":
        return batch_from_tensor(tensor, size, max_images=max_images)
    if datatype != "BYTES":
        raise RequestError(f"input {tensor.name!r} has datatype {tensor.datatype}; expected BYTES or FP32")
    shape = tensor.shape
    if (not isinstance(shape, Sequence) or isinstance(shape, str) or not 1 <= len(shape) <= 2
            or any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise RequestError(f"input {tensor.name!r}: BYTES images need shape [n] or [n, 1], got {shape!r}")
    files = _flat(tensor.data) if isinstance(tensor.data, list) else list(np.asarray(tensor.data).reshape(-1))
    if len(files) != shape[0]:
        raise RequestError(
            f"input {tensor.name!r}: shape {list(shape)} needs {shape[0]} images, 'data' holds {len(files)}"
        )
    return batch_from_files(files, max_images=max_images)


def batch_from_v1(body: Any, size: int, classes: Sequence[str], *, max_images: int) -> ImageBatch:
    """V1 {"instances": [{"b64": ..., "class"?: ...}, ...]} -> a checked batch."""
    if not isinstance(body, Mapping) or not isinstance(body.get("instances"), list):
        raise RequestError('V1 image requests are {"instances": [{"b64": "<base64 PNG or JPEG>"}, ...]}')
    instances = body["instances"]
    _count(len(instances), max_images)
    files, wanted = [], []
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping) or "b64" not in instance or not instance.keys() <= V1_KEYS:
            raise RequestError(
                f'instance {index} must be {{"b64": "<base64 PNG or JPEG>"}} (optionally with "class"), '
                f"got {type(instance).__name__}"
                + (f" with keys {sorted(instance)}" if isinstance(instance, Mapping) else "")
            )
        chosen = instance.get("class")
        if chosen is not None and chosen not in classes:
            raise RequestError(f"instance {index}: unknown class {chosen!r}; the model's classes are {list(classes)}")
        files.append(instance["b64"])
        wanted.append(chosen)
    batch = batch_from_files(files, max_images=max_images)
    batch.explain_classes = wanted
    return batch
