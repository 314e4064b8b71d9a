"""The raw files that arrived and were never prepared: what a prepare_dataset run without `raw_file` picks up.

Raw files land under date partitions (`raw/wachttijden/YYYY/MM/DD/wachttijden.csv`) or as the single
file `raw/wachttijden/wachttijden.csv`; both are objects under the raw prefix, found by listing it on
any backend. A file is new when its content (sha256) is in the ledger neither as prepared nor as
rejected, so the same bytes under another date or name are not new.

Hashing every raw file on every look would read the whole history each minute, so the digests are
cached in `intermediate/raw_index/<dataset>.json`, keyed by path and the store's ETag (which changes
with every write): a look reads one listing of raw, one of the ledger and this index, and hashes
only files it has not seen in that exact version. The index is only a cache: without it, files are
hashed again.

A data set of many files (the xray images under `raw/xray/YYYY/MM/DD/<class>/`) arrives as a set:
`new_snapshot` digests the content of every file with its class folder into one snapshot digest,
and the set is new when that digest is in the ledger neither as prepared nor as rejected. Adding,
removing or relabelling one image makes a new snapshot; renaming or re-dating one does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.data import ledger
from tasks.data.datalake import DataLake, ObjectInfo
from tasks.data.prepare import DATASET

RAW_SUFFIX = ".csv"
INDEX_CONTAINER = "intermediate"


def index_path(dataset: str = DATASET) -> str:
    return f"raw_index/{dataset}.json"


@dataclass(frozen=True)
class RawFile:
    """A raw file found by listing, with the digest of its content."""

    path: str
    sha256: str
    size: int
    modified: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "modified": self.modified.isoformat()}


def raw_files(lake: DataLake, prefix: str, suffixes: Sequence[str] = (RAW_SUFFIX,)) -> list[ObjectInfo]:
    """The files under `raw/<prefix>` ending in one of `suffixes` (CSV by default), oldest first
    (by modification time, then path)."""
    suffixes = tuple(s.lower() for s in suffixes)
    infos = [info for info in lake.list_info("raw", prefix) if info.path.lower().endswith(suffixes)]
    return sorted(infos, key=lambda info: (info.modified, info.path))


class _Digests:
    """sha256 per raw file, from the index when the file is unchanged since it was hashed."""

    def __init__(self, lake: DataLake, dataset: str) -> None:
        self.lake, self.path = lake, index_path(dataset)
        self.files: dict[str, dict[str, Any]] = {}
        if lake.exists(INDEX_CONTAINER, self.path):
            try:
                loaded = json.loads(lake.read_bytes(INDEX_CONTAINER, self.path))
            except ValueError:
                loaded = {}
            # a damaged cache costs a re-hash, nothing else
            self.files = loaded.get("files", {}) if isinstance(loaded, dict) else {}
        self.changed = False

    def of(self, info: ObjectInfo) -> str:
        cached = self.files.get(info.path)
        if cached and cached.get("etag") == info.etag and cached.get("size") == info.size:
            return cached["sha256"]
        digest = ledger.content_digest(self.lake.read_bytes("raw", info.path))
        self.files[info.path] = {"etag": info.etag, "size": info.size, "sha256": digest}
        self.changed = True
        return digest

    def save(self, prefix: str, listed: list[ObjectInfo]) -> None:
        present = {info.path for info in listed}
        gone = [path for path in self.files if path.startswith(prefix) and path not in present]
        for path in gone:
            del self.files[path]
        if self.changed or gone:
            body = json.dumps({"files": self.files}, indent=0, sort_keys=True).encode()
            self.lake.write_bytes(INDEX_CONTAINER, self.path, body, overwrite=True)


def next_new_raw(lake: DataLake, prefix: str, *, dataset: str = DATASET) -> RawFile | None:
    """The oldest raw file under `prefix` whose content was neither prepared nor rejected; None when there is none.

    Files are hashed oldest first and only until the first new one, so a burst of arrivals is
    worked off one file per run, in the order they came.
    """
    prepared, rejected = ledger.known_digests(lake, dataset)
    listed = raw_files(lake, prefix)
    digests = _Digests(lake, dataset)
    try:
        for info in listed:
            digest = digests.of(info)
            if digest not in prepared and digest not in rejected:
                return RawFile(info.path, digest, info.size, info.modified)
        return None
    finally:
        digests.save(prefix, listed)


@dataclass(frozen=True)
class RawSnapshot:
    """Every file of a many-file data set under a prefix, as one unit of arrival."""

    prefix: str
    sha256: str
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "sha256": self.sha256, "files": self.files}


def snapshot_digest(labelled_digests: Sequence[tuple[str, str]]) -> str:
    """One digest of a set of (class folder, content sha256) pairs, independent of order and file names."""
    lines = sorted({f"{label}\t{digest}" for label, digest in labelled_digests})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def current_snapshot(lake: DataLake, prefix: str, *, dataset: str, suffixes: Sequence[str]) -> RawSnapshot | None:
    """The snapshot of the files under `prefix` now (None when there are none), hashing only changed files."""
    listed = raw_files(lake, prefix, suffixes)
    if not listed:
        return None
    digests = _Digests(lake, dataset)
    try:
        pairs = [(info.path.rsplit("/", 2)[-2] if info.path.count("/") else "", digests.of(info)) for info in listed]
    finally:
        digests.save(prefix, listed)
    return RawSnapshot(prefix, snapshot_digest(pairs), len(listed))


def new_snapshot(lake: DataLake, prefix: str, *, dataset: str, suffixes: Sequence[str]) -> RawSnapshot | None:
    """The current snapshot when the ledger has it neither as prepared nor as rejected; else None."""
    found = current_snapshot(lake, prefix, dataset=dataset, suffixes=suffixes)
    if found is None:
        return None
    prepared, rejected = ledger.known_digests(lake, dataset)
    return None if found.sha256 in prepared or found.sha256 in rejected else found


def newest_raw(lake: DataLake, prefix: str) -> RawFile | None:
    """The most recently written raw file under `prefix`, new or not (what `reprocess` prepares again)."""
    listed = raw_files(lake, prefix)
    if not listed:
        return None
    info = listed[-1]
    return RawFile(info.path, ledger.content_digest(lake.read_bytes("raw", info.path)), info.size, info.modified)


def nothing_new(
    lake: DataLake, prefix: str, *, dataset: str = DATASET, suffixes: Sequence[str] = (RAW_SUFFIX,)
) -> str:
    """Why a look found nothing to prepare, for the skipped run's log."""
    count = len(raw_files(lake, prefix, suffixes))
    where = f"raw/{prefix}" if prefix else "raw/"
    if not count:
        kinds = ", ".join(f"*{s}" for s in suffixes)
        return f"no raw file ({kinds}) under {where} in {lake.describe()}: nothing to prepare"
    return (
        f"all {count} raw file(s) under {where} hold content that was prepared or rejected before "
        f"(ledger intermediate/ledger/{dataset}/): nothing new to prepare or train"
    )
