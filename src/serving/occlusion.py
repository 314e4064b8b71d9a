"""Occlusion sensitivity: which regions of a scan the class score depends on, from batched model calls only.

A grey patch slides over the image; each occluded copy is scored by the model, and the drop of the
explained class's probability at each patch position is the raw grid (positive: covering that region
lowers the score, so the region supports the class). Chosen over integrated gradients because it needs
nothing but the served predict call (no gradients, so it works for any model behind the batcher, and
the copies go through the same batched calls as predictions), and its grid is easy to read.

Pure: no I/O, no model; the caller scores the chunks (see OcclusionPlan) and combines.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# A 16 px patch every 8 px on the 128 px input: 15 x 15 = 225 occluded copies per image, which a small
# CNN scores in well under a second on 2 CPU cores; smaller patches cost quadratically more calls.
DEFAULT_PATCH = 16
DEFAULT_STRIDE = 8


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch origins along one axis, the last one flush with the edge so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


@dataclass(frozen=True)
class OcclusionPlan:
    """The occluded copies of one model input `image` (H, W, C) and how their scores become a heat map.

    `baseline` is the value a patch is filled with; None uses the image's mean (a patch of the
    average grey adds no edges of its own, unlike black on a bright scan).
    """

    image: np.ndarray
    patch: int = DEFAULT_PATCH
    stride: int = DEFAULT_STRIDE
    baseline: float | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise ValueError(f"expected one (height, width, channels) image, got shape {self.image.shape}")
        height, width = self.image.shape[:2]
        if not 1 <= self.patch <= min(height, width) or self.stride < 1:
            raise ValueError(f"patch {self.patch} / stride {self.stride} do not fit a {height}x{width} image")

    @property
    def rows(self) -> list[int]:
        return _starts(self.image.shape[0], self.patch, self.stride)

    @property
    def cols(self) -> list[int]:
        return _starts(self.image.shape[1], self.patch, self.stride)

    @property
    def size(self) -> int:
        """Occluded copies to score."""
        return len(self.rows) * len(self.cols)

    def _positions(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.rows for x in self.cols]

    def occluded(self, start: int, stop: int) -> np.ndarray:
        """Copies `start`..`stop` (row-major over the grid) as one float32 batch [k, H, W, C]."""
        fill = float(self.image.mean()) if self.baseline is None else float(self.baseline)
        positions = self._positions()[start:stop]
        batch = np.repeat(self.image[None].astype(np.float32), len(positions), axis=0)
        for i, (y, x) in enumerate(positions):
            batch[i, y : y + self.patch, x : x + self.patch] = fill
        return batch

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The copies in batches of at most `size` (each one model call's worth)."""
        for start in range(0, self.size, size):
            yield self.occluded(start, min(start + size, self.size))

    def grid(self, base_score: float, occluded_scores: np.ndarray) -> np.ndarray:
        """Score drop per patch position, float32 [len(rows), len(cols)]."""
        scores = np.asarray(occluded_scores, dtype=np.float32).reshape(-1)
        if scores.size != self.size:
            raise ValueError(f"expected {self.size} scores, got {scores.size}")
        return (np.float32(base_score) - scores).reshape(len(self.rows), len(self.cols))

    def pixel_map(self, grid: np.ndarray) -> np.ndarray:
        """The grid spread back onto the image (H, W): each pixel's mean drop over the patches covering it."""
        height, width = self.image.shape[:2]
        total = np.zeros((height, width), dtype=np.float64)
        count = np.zeros((height, width), dtype=np.float64)
        for (y, x), drop in zip(self._positions(), grid.reshape(-1), strict=True):
            total[y : y + self.patch, x : x + self.patch] += drop
            count[y : y + self.patch, x : x + self.patch] += 1
        return (total / count).astype(np.float32)


def occlusion_grid(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    class_index: int,
    *,
    patch: int = DEFAULT_PATCH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 256,
) -> tuple[OcclusionPlan, np.ndarray]:
    """(plan, grid) for one image with a synchronous `predict(batch [k,H,W,C]) -> probabilities [k, classes]`.

    The served model uses the plan's chunks through its batcher instead (serving.image_model);
    this is the same computation in one call, for tests and scripts.
    """
    plan = OcclusionPlan(image, patch, stride)
    base = float(predict(image[None].astype(np.float32))[0, class_index])
    scores = np.concatenate([predict(chunk)[:, class_index] for chunk in plan.chunks(batch_size)])
    return plan, plan.grid(base, scores)


def heat_map_png(image: np.ndarray, pixel_map: np.ndarray, *, alpha: float = 0.5) -> bytes:
    """The scan (H, W, 1 in [0, 1]) in grey with the map over it: red where covering the region lowers the
    score, blue where it raises it, strength relative to the largest absolute drop. RGB PNG, H x W."""
    from PIL import Image

    gray = np.clip(image[..., 0], 0.0, 1.0)
    peak = float(np.abs(pixel_map).max())
    scaled = pixel_map / peak if peak > 0 and math.isfinite(peak) else np.zeros_like(pixel_map)
    colour = np.zeros((*scaled.shape, 3), dtype=np.float32)
    colour[..., 0] = np.clip(scaled, 0, 1)
    colour[..., 2] = np.clip(-scaled, 0, 1)
    weight = alpha * np.abs(scaled)[..., None]
    blended = (1 - weight) * gray[..., None] + weight * colour
    pixels = (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
