"""Synthetic chest-X-ray-like scans: deterministic (seeded) grayscale PNGs of two classes, with planted defects.

Not medical images. Each scan is drawn from parts (a bright thorax, two dark lung fields, ribs, spine,
heart shadow) with per-image variation (size 128-512 px, exposure, noise, rotation, position). The
pneumonia-like class adds diffuse brighter patches (opacities) inside the lung fields; some normal
scans carry faint patches too and some opacities are faint, so the classes overlap and a classifier's
AUC says something (neither chance nor a trivial 1.0). What it shows: the platform's image path works
end to end and a model learns a local texture/intensity cue. What it does not show: anything about
real radiographs or clinical performance.

Defects the preparation must catch are planted among the files: truncated PNGs (corrupt), RGB PNGs
(wrong mode) and byte-identical copies under another name (duplicates).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from models.xray.schema import CLASSES, POSITIVE_CLASS

GOOD, CORRUPT, WRONG_MODE, DUPLICATE = "good", "corrupt", "wrong_mode", "duplicate"
MIN_GENERATED_SIDE, MAX_GENERATED_SIDE = 128, 512


@dataclass(frozen=True)
class GeneratedScan:
    """One file: its class folder, file name, what it is (GOOD or a planted defect) and its bytes."""

    label: str
    name: str
    kind: str
    data: bytes


@dataclass(frozen=True)
class DefectCounts:
    corrupt: int
    wrong_mode: int
    duplicate: int


def defect_counts(count: int) -> DefectCounts:
    """About 1% corrupt, 0.5% RGB and 1% duplicates, at least one of each (for count >= 20)."""
    if count < 20:
        return DefectCounts(0, 0, 0)
    return DefectCounts(max(1, count // 100), max(1, count // 200), max(1, count // 100))


def draw_scan(rng: np.random.Generator, pneumonia: bool) -> np.ndarray:
    """One scan as a (height, width) uint8 array."""
    width = int(rng.integers(MIN_GENERATED_SIDE, MAX_GENERATED_SIDE + 1))
    height = int(np.clip(width * rng.uniform(0.9, 1.2), MIN_GENERATED_SIDE, MAX_GENERATED_SIDE))
    # Normalised coordinates with a random shift: x, y in about [-1, 1].
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    x = x - rng.uniform(-0.06, 0.06)
    y = y - rng.uniform(-0.06, 0.06)

    def ellipse(cx: float, cy: float, rx: float, ry: float, edge: float = 0.08) -> np.ndarray:
        d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        return np.clip((1 - d) / edge, 0, 1)  # a soft-edged mask

    body = ellipse(0, 0.05, rng.uniform(0.8, 0.92), rng.uniform(0.95, 1.1), 0.15)
    spread, lung_ry = rng.uniform(0.33, 0.42), rng.uniform(0.48, 0.6)
    lungs = np.maximum(
        ellipse(-spread, -0.05, rng.uniform(0.22, 0.3), lung_ry, 0.2),
        ellipse(spread, -0.05, rng.uniform(0.22, 0.3), lung_ry, 0.2),
    )
    heart = ellipse(rng.uniform(0.02, 0.12), 0.3, rng.uniform(0.18, 0.26), rng.uniform(0.2, 0.28), 0.3)
    spine = np.clip(1 - np.abs(x) / 0.07, 0, 1) * body
    ribs = (np.cos(y * rng.uniform(16, 22) + 3 * x**2) > 0.55) * lungs
    image = 25 + 105 * body - 70 * lungs * (1 - heart) + 40 * heart + 35 * spine + 18 * ribs

    # Opacities: gaussian patches inside the lung fields with a mottled texture. Pneumonia: two to
    # five, mostly strong; normal: sometimes one faint patch, so the classes overlap.
    patches = int(rng.integers(2, 6)) if pneumonia else int(rng.random() < 0.3)
    texture = _smooth_noise(rng, height, width)
    for _ in range(patches):
        side = rng.choice([-1, 1])
        cx, cy = side * spread + rng.uniform(-0.12, 0.12), rng.uniform(-0.4, 0.35)
        sigma = rng.uniform(0.08, 0.2)
        strength = rng.uniform(20, 70) if pneumonia else rng.uniform(5, 25)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
        image = image + strength * blob * lungs * (0.6 + 0.8 * texture)

    # Exposure, sensor noise, then a small rotation (the patient is never quite straight).
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)
    image = image + rng.normal(0, rng.uniform(2, 10), image.shape)
    return _rotate(np.clip(image, 0, 255).astype(np.uint8), float(rng.uniform(-8, 8)))


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid scaled up (bilinear), as a patch texture."""
    from PIL import Image

    coarse = (rng.random((12, 12)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)) / 255.0


def _rotate(gray: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(gray).rotate(degrees, Image.Resampling.BILINEAR, fillcolor=int(gray[0, 0])))


def encode_png(gray: np.ndarray, mode: str = "L") -> bytes:
    from PIL import Image

    image = Image.fromarray(gray)
    buffer = io.BytesIO()
    (image if mode == "L" else image.convert(mode)).save(buffer, "PNG")
    return buffer.getvalue()


def generate_scans(count: int = 3000, seed: int = 42, *, positive_share: float = 0.5) -> list[GeneratedScan]:
    """`count` files (defects included), the same bytes for the same (count, seed) on every machine."""
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")
    rng = np.random.default_rng(seed)
    defects = defect_counts(count)
    good = count - defects.duplicate
    negative = next(c for c in CLASSES if c != POSITIVE_CLASS)
    wrong_mode = set(rng.choice(good, defects.wrong_mode + defects.corrupt, replace=False).tolist())
    corrupt = set(sorted(wrong_mode)[: defects.corrupt])
    wrong_mode -= corrupt
    scans = []
    for i in range(good):
        positive = bool(rng.random() < positive_share)
        gray = draw_scan(rng, positive)
        label = POSITIVE_CLASS if positive else negative
        name = f"scan-{seed}-{i:05d}.png"
        if i in corrupt:
            data = encode_png(gray)
            scans.append(GeneratedScan(label, name, CORRUPT, data[: len(data) * 2 // 3]))  # truncated
        elif i in wrong_mode:
            scans.append(GeneratedScan(label, name, WRONG_MODE, encode_png(gray, "RGB")))
        else:
            scans.append(GeneratedScan(label, name, GOOD, encode_png(gray)))
    originals = [s for s in scans if s.kind == GOOD]
    for j, k in enumerate(rng.choice(len(originals), defects.duplicate, replace=False)):
        source = originals[int(k)]
        scans.append(GeneratedScan(source.label, f"copy-{seed}-{j:05d}.png", DUPLICATE, source.data))
    return scans
