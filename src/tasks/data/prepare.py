"""The prepare_dataset stage: validate the raw file, clean it, split it, and write the run's own partition."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.data import ledger
from tasks.data.datalake import DataLake
from tasks.data.validation import DataValidationError, ValidationReport, clean, read_raw_csv, validate

DATASET = "wachttijden"
SPLITS = ("train", "validation", "test")
SUCCESS_MARKER = "_SUCCESS"


def partition_for(run_id: str) -> str:
    """A path segment unique to one DAG run, stable across retries of that run."""
    return "run=" + re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def partition_path(partition: str, name: str, dataset: str = DATASET) -> str:
    return f"{dataset}/{partition}/{name}"


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.8
    validation: float = 0.1

    def cut_points(self, rows: int) -> tuple[int, int]:
        return int(rows * self.train), int(rows * (self.train + self.validation))


class AlreadyPrepared(Exception):
    """The raw file's content was prepared before: preparing it again would only train the same model again."""


def check_new_raw(lake: DataLake, raw_file: str) -> str:
    """`raw_file` when its content is new; AlreadyPrepared (naming the earlier run) when the ledger has it."""
    digest = ledger.content_digest(lake.read_bytes("raw", raw_file))
    entry = ledger.processed(lake, DATASET, digest)
    if entry is not None:
        raise AlreadyPrepared(
            f"raw/{raw_file} (sha256 {digest[:12]}) has the content that run {entry['run_id']} prepared into "
            f"preprocessed/{DATASET}/{entry['partition']}; nothing new to prepare or train "
            "(trigger with reprocess=true to prepare it again)"
        )
    return raw_file


def record_prepared(lake: DataLake, validated: dict, partition: str, run_id: str) -> dict:
    """Enter the validated content in the ledger once its partition is complete."""
    return ledger.record(
        lake, DATASET, validated["sha256"], raw_file=validated["raw_file"], partition=partition, run_id=run_id
    )


def validate_raw(lake: DataLake, raw_file: str, partition: str) -> dict:
    """Validate the raw file; the report goes to `intermediate` either way, and a failure raises
    (after recording the content as rejected in the ledger).

    The parsed columns of a file that passes are kept in `intermediate` as well, so `clean` works
    on exactly what was validated (and does not parse the CSV a second time).
    """
    source = f"raw/{raw_file}"
    data = lake.read_bytes("raw", raw_file)
    try:
        frame = read_raw_csv(data, source)
        report, _ = validate(frame, source)
    except DataValidationError as exc:
        frame, report = None, exc.report
    lake.write_bytes(
        "intermediate", partition_path(partition, "validation.json"),
        json.dumps(report.to_dict(), indent=1, ensure_ascii=False).encode(), overwrite=True,
    )
    lake.write_bytes(
        "intermediate", partition_path(partition, "validation.txt"), report.to_text().encode(), overwrite=True
    )
    if not report.ok:
        # So that runs looking for new files pass this content by instead of failing on it again.
        ledger.record_rejected(
            lake, DATASET, ledger.content_digest(data), raw_file=raw_file, partition=partition,
            reason=f"validation failed: {'; '.join(report.errors)} (report: intermediate/{DATASET}/{partition}/)",
        )
        raise DataValidationError(report)
    lake.write_bytes("intermediate", partition_path(partition, "validated.parquet"), to_parquet(frame), overwrite=True)
    return {
        "raw_file": raw_file,
        # Of exactly the bytes validated: the ledger records this content, whatever lands in raw/ later.
        "sha256": ledger.content_digest(data),
        "total_rows": report.total_rows,
        "valid_rows": report.valid_rows,
        "row_issues": report.row_issues,
    }


def clean_validated(lake: DataLake, partition: str) -> dict:
    """Drop invalid rows and keep the model's columns; written to `intermediate` as Parquet."""
    source = partition_path(partition, "validated.parquet")
    if not lake.exists("intermediate", source):
        raise DataValidationError(
            ValidationReport(f"intermediate/{source}", errors=["no validated data for this run: validate first"])
        )
    frame = pd.read_parquet(io.BytesIO(lake.read_bytes("intermediate", source)))
    report, valid = validate(frame, f"intermediate/{source}")
    if not report.ok:  # never clean data that fails, whatever wrote it
        raise DataValidationError(report)
    cleaned = clean(frame, valid)
    lake.write_bytes("intermediate", partition_path(partition, "clean.parquet"), to_parquet(cleaned), overwrite=True)
    return {"rows": len(cleaned)}


def split_clean(lake: DataLake, partition: str, *, seed: int = 42, fractions: SplitFractions | None = None) -> dict:
    """Shuffle deterministically and write train/validation/test plus a success marker to `preprocessed`.

    The marker is written last: readers only use partitions that have it, so a run that dies
    half-way never exposes a half-written split. A partition that is complete is never rewritten.
    """
    marker = partition_path(partition, SUCCESS_MARKER)
    if lake.exists("preprocessed", marker):
        return json.loads(lake.read_bytes("preprocessed", marker))
    frame = pd.read_parquet(io.BytesIO(lake.read_bytes("intermediate", partition_path(partition, "clean.parquet"))))
    order = np.random.default_rng(seed).permutation(len(frame))
    first, second = (fractions or SplitFractions()).cut_points(len(frame))
    parts = dict(zip(SPLITS, np.split(order, [first, second]), strict=True))
    counts = {}
    for name, index in parts.items():
        lake.write_bytes(
            "preprocessed", partition_path(partition, f"{name}.parquet"),
            to_parquet(frame.iloc[index].reset_index(drop=True)), overwrite=True,
        )
        counts[name] = len(index)
    summary = {"partition": partition, "rows": counts, "seed": seed}
    lake.write_bytes("preprocessed", marker, json.dumps(summary).encode(), overwrite=False)
    return summary


def complete_partitions(lake: DataLake, dataset: str = DATASET) -> list[str]:
    """Partitions of `preprocessed` that have their success marker, oldest first by name."""
    suffix = "/" + SUCCESS_MARKER
    return sorted(
        path[len(dataset) + 1 : -len(suffix)]
        for path in lake.list("preprocessed", dataset + "/")
        if path.endswith(suffix)
    )


def read_split(lake: DataLake, partition: str, name: str) -> pd.DataFrame:
    """One split of a complete partition."""
    if not lake.exists("preprocessed", partition_path(partition, SUCCESS_MARKER)):
        raise FileNotFoundError(
            f"partition {partition!r} of preprocessed/{DATASET} is not complete (no {SUCCESS_MARKER} marker)"
        )
    return pd.read_parquet(io.BytesIO(lake.read_bytes("preprocessed", partition_path(partition, f"{name}.parquet"))))


def to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
