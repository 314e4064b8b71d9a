"""The prepare_images stage: read a labelled image set from the data lake, validate it, and write the run's own
partition of TFRecord shards (train/validation/test by content hash) with a manifest, marker last.

Layout read (raw container): xray/YYYY/MM/DD/<class>/<file>.png|.jpg|.jpeg, the generator's and a real
data set's alike. The whole set under the prefix is prepared each time a new snapshot of it arrives
(tasks.data.arrivals.new_snapshot), so every partition is a complete, self-contained training set.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from models.xray.images import to_model_pixels
from models.xray.records import SPLITS, serialize, split_of
from models.xray.schema import CLASSES, IMAGE_SIZE, IMAGE_SUFFIXES, MODEL_NAME, RAW_PREFIX
from models.xray.validation import ImageValidationError, ValidationConfig, label_of, validate_images
from tasks.data import ledger
from tasks.data.arrivals import RawSnapshot, current_snapshot, new_snapshot, nothing_new, raw_files, snapshot_digest
from tasks.data.datalake import DataLake
from tasks.data.prepare import SUCCESS_MARKER, AlreadyPrepared, partition_path

DATASET = MODEL_NAME
PREFIX = RAW_PREFIX.removeprefix("raw/") + "/"
MANIFEST = "manifest.json"
# Several shards per split so tf.data can read them in parallel; fewer when a split is small.
SHARDS_PER_SPLIT = 4
MIN_RECORDS_PER_SHARD = 64
READ_THREADS = 8


def validation_config(settings: Any) -> ValidationConfig:
    return ValidationConfig(
        max_bad_fraction=float(settings.xray_max_bad_fraction),
        min_images_per_class=int(settings.xray_min_images_per_class),
        min_class_share=float(settings.xray_min_class_share),
        allow_colour=bool(settings.xray_allow_colour),
    )


def snapshot(lake: DataLake, prefix: str = PREFIX) -> RawSnapshot | None:
    return current_snapshot(lake, prefix, dataset=DATASET, suffixes=IMAGE_SUFFIXES)


def new_images(lake: DataLake, prefix: str = PREFIX) -> RawSnapshot | None:
    """The image set's snapshot when the ledger knows it neither as prepared nor as rejected."""
    return new_snapshot(lake, prefix, dataset=DATASET, suffixes=IMAGE_SUFFIXES)


def no_new_images(lake: DataLake, prefix: str = PREFIX) -> str:
    return nothing_new(lake, prefix, dataset=DATASET, suffixes=IMAGE_SUFFIXES)


def check_new_snapshot(lake: DataLake, prefix: str = PREFIX) -> RawSnapshot:
    """The current snapshot when it is new; AlreadyPrepared (naming the run) when the ledger has it."""
    found = snapshot(lake, prefix)
    if found is None:
        raise FileNotFoundError(f"no image files under raw/{prefix} in {lake.describe()}")
    entry = ledger.processed(lake, DATASET, found.sha256)
    if entry is not None:
        raise AlreadyPrepared(
            f"the {found.files} files under raw/{prefix} (snapshot {found.sha256[:12]}) are what run "
            f"{entry['run_id']} prepared into preprocessed/{DATASET}/{entry['partition']}; nothing new "
            "(trigger with reprocess=true to prepare them again)"
        )
    return found


def read_images(lake: DataLake, prefix: str = PREFIX) -> list[tuple[str, bytes]]:
    """The loader: every image file under `raw/<prefix>` as (path, bytes), read in parallel (object
    stores answer one request at a time per connection; a few thousand small files add up)."""
    paths = [info.path for info in raw_files(lake, prefix, IMAGE_SUFFIXES)]
    with ThreadPoolExecutor(READ_THREADS) as pool:
        return list(zip(paths, pool.map(lambda p: lake.read_bytes("raw", p), paths), strict=True))


def _write_report(lake: DataLake, partition: str, report) -> None:
    for name, body in (("validation.json", json.dumps(report.to_dict(), indent=1)), ("validation.txt",
                                                                                        report.to_text())):
        lake.write_bytes("intermediate", partition_path(partition, name, DATASET), body.encode(), overwrite=True)


def shard_names(split: str, count: int) -> list[str]:
    return [f"{split}-{i:04d}-of-{count:04d}.tfrecord" for i in range(count)]


def prepare_images(
    lake: DataLake, partition: str, *, run_id: str, config: ValidationConfig | None = None,
    prefix: str = PREFIX, shards_per_split: int = SHARDS_PER_SPLIT,
) -> dict[str, Any]:
    """Validate the image set and write `preprocessed/xray/<partition>/`; returns the manifest.

    A complete partition (its marker exists) is returned as it is, never rewritten. A set that fails
    validation writes its report to `intermediate/xray/<partition>/`, is recorded as rejected in the
    ledger, and raises ImageValidationError: nothing is written to `preprocessed`.
    """
    marker = partition_path(partition, SUCCESS_MARKER, DATASET)
    if lake.exists("preprocessed", marker):
        return json.loads(lake.read_bytes("preprocessed", marker))
    files = read_images(lake, prefix)
    # Of exactly the files read: the ledger records this content, whatever lands in raw/ meanwhile.
    digest = snapshot_digest([(label_of(p), ledger.content_digest(d)) for p, d in files])
    report, accepted = validate_images(files, f"raw/{prefix} in {lake.describe()}", config)
    _write_report(lake, partition, report)
    if not report.ok:
        ledger.record_rejected(
            lake, DATASET, digest, raw_file=f"raw/{prefix}", partition=partition,
            reason=f"validation failed: {'; '.join(report.errors)} (report: intermediate/{DATASET}/{partition}/)",
        )
        raise ImageValidationError(report)

    by_split: dict[str, list] = {name: [] for name in SPLITS}
    for scan in accepted:
        by_split[split_of(scan.sha256)].append(scan)
    counts, shards = {}, {}
    with tempfile.TemporaryDirectory(prefix="xray-shards-") as scratch:
        for split, scans in by_split.items():
            count = max(1, min(shards_per_split, len(scans) // MIN_RECORDS_PER_SHARD))
            shards[split] = shard_names(split, count)
            _write_shards(lake, partition, scans, shards[split], Path(scratch))
            counts[split] = dict(Counter(s.label for s in scans)) | {"total": len(scans)}
    manifest = {
        "partition": partition, "dataset": DATASET, "classes": list(CLASSES), "image_size": IMAGE_SIZE,
        "snapshot_sha256": digest, "splits": counts, "shards": shards, "run_id": run_id,
        "validation": {k: v for k, v in report.to_dict().items() if k != "examples"},
    }
    body = json.dumps(manifest, indent=1).encode()
    lake.write_bytes("preprocessed", partition_path(partition, MANIFEST, DATASET), body, overwrite=True)
    # The marker last: readers use only partitions that have it, so a run dying half-way exposes nothing.
    lake.write_bytes("preprocessed", marker, body, overwrite=False)
    ledger.record(lake, DATASET, digest, raw_file=f"raw/{prefix}", partition=partition, run_id=run_id)
    return manifest


def _write_shards(lake: DataLake, partition: str, scans: list, names: list[str], scratch: Path) -> None:
    import tensorflow as tf

    for index, name in enumerate(names):
        local = scratch / name
        with tf.io.TFRecordWriter(str(local)) as writer:
            for scan in scans[index :: len(names)]:
                writer.write(serialize(to_model_pixels(scan.gray), CLASSES.index(scan.label), scan.sha256))
        lake.upload_from("preprocessed", partition_path(partition, name, DATASET), local, overwrite=True)


def read_manifest(lake: DataLake, partition: str) -> dict[str, Any]:
    """The manifest of a complete partition; FileNotFoundError naming it when it is not complete."""
    marker = partition_path(partition, SUCCESS_MARKER, DATASET)
    if not lake.exists("preprocessed", marker):
        raise FileNotFoundError(
            f"partition {partition!r} of preprocessed/{DATASET} is not complete (no {SUCCESS_MARKER} marker)"
        )
    return json.loads(lake.read_bytes("preprocessed", marker))


def download_split(lake: DataLake, partition: str, split: str, target: Path) -> list[str]:
    """Copy one split's shards of a complete partition to a local folder; their local paths."""
    manifest = read_manifest(lake, partition)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in manifest["shards"][split]:
        lake.download_to("preprocessed", partition_path(partition, name, DATASET), target / name)
        paths.append(str(target / name))
    return paths
