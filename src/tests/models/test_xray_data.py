"""The xray data half: generator determinism, the validation report on planted defects, a failing set, the
loader on a real-layout folder (JPEG, RGB-stored gray), and an AUC and accuracy floor for a short training run."""

from __future__ import annotations

import io
import json
from datetime import date

import numpy as np
import pytest
from PIL import Image

from models.xray.generate import CORRUPT, DUPLICATE, WRONG_MODE, defect_counts, generate_scans
from tasks.data.datalake import open_datalake


def test_the_generator_is_deterministic_and_plants_each_defect():
    first, again, other = generate_scans(60, seed=3), generate_scans(60, seed=3), generate_scans(60, seed=4)
    assert [s.data for s in first] == [s.data for s in again]
    assert [s.data for s in first] != [s.data for s in other]
    kinds = [s.kind for s in first]
    counts = defect_counts(60)
    assert (kinds.count(CORRUPT), kinds.count(WRONG_MODE), kinds.count(DUPLICATE)) == (
        counts.corrupt, counts.wrong_mode, counts.duplicate) == (1, 1, 1)
    sides = [Image.open(io.BytesIO(s.data)).size for s in first if s.kind != CORRUPT]
    assert all(128 <= w <= 512 and 128 <= h <= 512 for w, h in sides)


def test_the_report_counts_the_planted_defects_and_the_partition_is_written(tmp_path):
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare_images import prepare_images

    lake = open_datalake(str(tmp_path / "lake"))
    written = write_scans(lake, count=120, seed=5, day=date(2024, 5, 1))
    manifest = prepare_images(lake, "run=a", run_id="a")
    report = json.loads(lake.read_bytes("intermediate", "xray/run=a/validation.json"))
    assert report["dropped"] == {"corrupt": written["corrupt"], "duplicate": written["duplicate"],
                                 "wrong_mode": written["wrong_mode"]}
    assert report["accepted"] == written["good"] == sum(s["total"] for s in manifest["splits"].values())
    assert lake.exists("preprocessed", "xray/run=a/_SUCCESS")
    # Re-running converges: the complete partition is returned, never rewritten.
    assert prepare_images(lake, "run=a", run_id="again") == manifest


def test_too_many_unusable_files_fail_readably_and_write_no_partition(tmp_path):
    from models.xray.validation import ImageValidationError
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare_images import new_images, prepare_images

    lake = open_datalake(str(tmp_path / "lake"))
    write_scans(lake, count=40, seed=6, day=date(2024, 5, 1))
    for i in range(5):
        lake.write_bytes("raw", f"xray/2024/05/02/normal/broken-{i}.png", b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageValidationError, match=r"files \(1[0-9]\.[0-9]%\) are unusable .*at most 5\.0%"):
        prepare_images(lake, "run=b", run_id="b")
    assert lake.list("preprocessed", "xray/") == []
    assert "FAILED" in lake.read_bytes("intermediate", "xray/run=b/validation.txt").decode()
    assert new_images(lake) is None  # recorded as rejected: scheduled runs pass it by


def test_the_loader_reads_a_real_layout_with_jpeg_and_rgb_stored_gray(tmp_path):
    from models.xray.validation import ValidationConfig
    from tasks.data.prepare_images import prepare_images

    rng = np.random.default_rng(0)
    lake = open_datalake(str(tmp_path / "lake"))
    for label in ("normal", "pneumonia"):
        for i in range(12):
            image = Image.fromarray((rng.random((200, 180)) * 255).astype(np.uint8))
            if i % 3 == 0:
                image, suffix, fmt = image.convert("RGB"), "jpeg", "JPEG"
            elif i % 3 == 1:
                suffix, fmt = "jpg", "JPEG"
            else:
                suffix, fmt = "png", "PNG"
            buffer = io.BytesIO()
            image.save(buffer, fmt)
            lake.write_bytes("raw", f"xray/2023/11/{i + 1:02d}/{label}/IM-{i:04d}.{suffix}", buffer.getvalue())
    manifest = prepare_images(lake, "run=real", run_id="r", config=ValidationConfig(allow_colour=True))
    assert manifest["validation"]["accepted"] == 24 and manifest["validation"]["dropped"] == {}


def test_a_short_training_run_learns_well_above_chance(tmp_path, monkeypatch, mlflow_client_env):
    from tasks.data.generate_images import write_scans
    from tasks.data.prepare_images import prepare_images
    from tasks.training.train_images import train_architecture

    lake = open_datalake(str(tmp_path / "lake"))
    write_scans(lake, count=400, seed=7, day=date(2024, 5, 1))
    prepare_images(lake, "run=t", run_id="t")
    monkeypatch.chdir(tmp_path)  # a sqlite tracking URI puts the run's artifacts under ./mlruns
    result = train_architecture(lake, "run=t", {"name": "small_cnn", "epochs": 12},
                                tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    print("test ROC AUC", result["test"]["auc"], "accuracy", result["test"]["accuracy"], "validation AUC",
          result["validation"]["auc"])
    # Both: on this data a net that has not learned (loss at chance, one class predicted for every scan)
    # can still rank the test split well by tiny output differences.
    assert result["test"]["auc"] >= 0.9, result
    assert result["test"]["accuracy"] >= 0.7, result  # 17 of 34 right is chance here
