"""Occlusion sensitivity as a pure function: the region that drives the score is where the map peaks."""

from __future__ import annotations

import io

import numpy as np
import pytest

from serving.occlusion import OcclusionPlan, heat_map_png, occlusion_grid

SIZE = 64
REGION = (slice(8, 24), slice(40, 56))  # what the scorer below looks at


def region_scorer(batch: np.ndarray) -> np.ndarray:
    """Two-class 'model': P(class 1) rises with the region's brightness; everything else is ignored."""
    p = 1 / (1 + np.exp(-(10 * batch[:, REGION[0], REGION[1], 0].mean(axis=(1, 2)) - 5)))
    return np.stack([1 - p, p], axis=1).astype(np.float32)


def scan(bright_region: bool = True) -> np.ndarray:
    rng = np.random.default_rng(3)
    image = rng.uniform(0.1, 0.3, size=(SIZE, SIZE, 1)).astype(np.float32)
    if bright_region:
        image[REGION] = 0.95
    return image


def test_occluding_the_driving_region_changes_the_score_most():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return region_scorer(batch)

    plan, grid = occlusion_grid(scan(), predict, class_index=1, patch=8, stride=4, batch_size=50)
    assert grid.shape == (len(plan.rows), len(plan.cols)) == (15, 15)
    y, x = np.unravel_index(np.argmax(grid), grid.shape)
    top, left = plan.rows[y], plan.cols[x]
    # The patch with the largest drop lies wholly inside the region.
    assert REGION[0].start <= top and top + 8 <= REGION[0].stop, (top, left)
    assert REGION[1].start <= left and left + 8 <= REGION[1].stop, (top, left)
    assert grid.max() > 0.02
    # Patches that do not touch the region change nothing.
    outside = [
        grid[i, j] for i, r in enumerate(plan.rows) for j, c in enumerate(plan.cols)
        if r + 8 <= REGION[0].start or r >= REGION[0].stop or c + 8 <= REGION[1].start or c >= REGION[1].stop
    ]
    assert outside and np.abs(outside).max() < 1e-6
    # Batched: one call for the base score, then chunks of at most batch_size.
    assert calls == [1, 50, 50, 50, 50, 25]


def test_the_map_for_the_other_class_is_the_mirror_image():
    _, positive = occlusion_grid(scan(), region_scorer, class_index=1, patch=8, stride=8)
    _, negative = occlusion_grid(scan(), region_scorer, class_index=0, patch=8, stride=8)
    np.testing.assert_allclose(positive, -negative, atol=1e-6)


def test_every_pixel_is_covered_and_the_last_patch_is_flush_with_the_edge():
    plan = OcclusionPlan(np.zeros((50, 70, 1), np.float32), patch=16, stride=12)
    assert plan.rows == [0, 12, 24, 34] and plan.cols == [0, 12, 24, 36, 48, 54]
    covered = np.zeros((50, 70), bool)
    batch = plan.occluded(0, plan.size)
    assert batch.shape == (plan.size, 50, 70, 1)
    for y in plan.rows:
        for x in plan.cols:
            covered[y : y + 16, x : x + 16] = True
    assert covered.all()
    chunks = list(plan.chunks(7))
    assert [len(c) for c in chunks] == [7, 7, 7, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), batch)


def test_the_patch_is_filled_with_the_mean_grey_and_nothing_else_changes():
    image = scan()
    plan = OcclusionPlan(image, patch=8, stride=8)
    first = plan.occluded(0, 1)[0]
    np.testing.assert_allclose(first[:8, :8], image.mean(), rtol=1e-6)
    np.testing.assert_array_equal(first[8:], image[8:])
    np.testing.assert_array_equal(first[:8, 8:], image[:8, 8:])


def test_the_pixel_map_spreads_the_grid_back_onto_the_image():
    plan = OcclusionPlan(np.zeros((32, 32, 1), np.float32), patch=16, stride=16)
    pixel = plan.pixel_map(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    assert pixel.shape == (32, 32)
    assert pixel[0, 0] == 1 and pixel[0, 31] == 2 and pixel[31, 0] == 3 and pixel[31, 31] == 4


def test_heat_map_png_is_an_rgb_png_of_the_input_size_red_where_the_score_depends():
    from PIL import Image

    image = scan()
    plan, grid = occlusion_grid(image, region_scorer, class_index=1, patch=8, stride=4)
    png = heat_map_png(image, plan.pixel_map(grid))
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (SIZE, SIZE)
    pixels = np.asarray(decoded).astype(int)
    inside, outside = pixels[REGION], pixels[:8, :8]
    assert (inside[..., 0] - inside[..., 2]).mean() > 30  # red over the region
    assert np.abs(outside[..., 0] - outside[..., 2]).max() == 0  # plain grey elsewhere


def test_wrong_inputs_are_refused():
    with pytest.raises(ValueError, match="one \\(height, width, channels\\)"):
        OcclusionPlan(np.zeros((4, 64, 64, 1)))
    with pytest.raises(ValueError, match="do not fit"):
        OcclusionPlan(np.zeros((8, 8, 1)), patch=16)
    with pytest.raises(ValueError, match="expected 4 scores"):
        OcclusionPlan(np.zeros((32, 32, 1)), patch=16, stride=16).grid(1.0, np.zeros(3))
