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
"""

from __future__ import annotations

import json
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


def raw_files(lake: DataLake, prefix: str) -> list[ObjectInfo]:
    """The CSV files under `raw/<prefix>`, oldest first (by modification time, then path)."""
    infos = [info for info in lake.list_info("raw", prefix) if info.path.lower().endswith(RAW_SUFFIX)]
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


def newest_raw(lake: DataLake, prefix: str) -> RawFile | None:
    """The most recently written raw file under `prefix`, new or not (what `reprocess` prepares again)."""
    listed = raw_files(lake, prefix)
    if not listed:
        return None
    info = listed[-1]
    return RawFile(info.path, ledger.content_digest(lake.read_bytes("raw", info.path)), info.size, info.modified)


def nothing_new(lake: DataLake, prefix: str) -> str:
    """Why a look found nothing to prepare, for the skipped run's log."""
    count = len(raw_files(lake, prefix))
    where = f"raw/{prefix}" if prefix else "raw/"
    if not count:
        return f"no raw file (*{RAW_SUFFIX}) under {where} in {lake.describe()}: nothing to prepare"
    return (
        f"all {count} raw file(s) under {where} hold content that was prepared or rejected before "
        f"(ledger intermediate/ledger/{DATASET}/): nothing new to prepare or train"
    )
