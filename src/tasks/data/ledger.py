"""A ledger in the data lake of the raw files already prepared, by content hash, so the same data never trains twice.

One write-once object per prepared content: `intermediate/ledger/<dataset>/<sha256>.json`. Write-once
(the data lake's no-overwrite write) makes two runs racing on the same file harmless: the first
record stands, the second finds it. Renaming or copying a file does not make it new; changing one
byte does.

Content that was refused (it failed validation, or drifted in fail mode) is recorded as well, under
`intermediate/ledger/<dataset>/rejected/<sha256>.json`: a scheduled run looking for new files passes
it by instead of failing on it again every time. Naming the file explicitly still prepares it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from tasks.data.datalake import DataLake, ObjectExistsError

LEDGER_CONTAINER = "intermediate"


def content_digest(data: bytes) -> str:
    """The sha256 of a raw file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def entry_path(dataset: str, digest: str) -> str:
    """Where the ledger records that content `digest` of `dataset` was prepared."""
    return f"ledger/{dataset}/{digest}.json"


def rejected_path(dataset: str, digest: str) -> str:
    """Where the ledger records that content `digest` of `dataset` was refused."""
    return f"ledger/{dataset}/rejected/{digest}.json"


def processed(lake: DataLake, dataset: str, digest: str) -> dict[str, Any] | None:
    """The ledger entry of this content, or None when it was never prepared."""
    path = entry_path(dataset, digest)
    if not lake.exists(LEDGER_CONTAINER, path):
        return None
    return json.loads(lake.read_bytes(LEDGER_CONTAINER, path))


def record(lake: DataLake, dataset: str, digest: str, *, raw_file: str, partition: str, run_id: str) -> dict[str, Any]:
    """Record that this content was prepared into `partition`; an earlier record of it is kept and returned."""
    entry = {
        "sha256": digest,
        "raw_file": raw_file,
        "partition": partition,
        "run_id": run_id,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        lake.write_bytes(LEDGER_CONTAINER, entry_path(dataset, digest), json.dumps(entry).encode(), overwrite=False)
    except ObjectExistsError:
        return processed(lake, dataset, digest) or entry
    return entry


def record_rejected(
    lake: DataLake, dataset: str, digest: str, *, raw_file: str, partition: str, reason: str
) -> dict[str, Any]:
    """Record that this content was refused (the first refusal stands), with why and where the report is."""
    entry = {
        "sha256": digest,
        "raw_file": raw_file,
        "partition": partition,
        "reason": reason[:2000],
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        lake.write_bytes(LEDGER_CONTAINER, rejected_path(dataset, digest), json.dumps(entry).encode(), overwrite=False)
    except ObjectExistsError:
        return json.loads(lake.read_bytes(LEDGER_CONTAINER, rejected_path(dataset, digest)))
    return entry


def known_digests(lake: DataLake, dataset: str) -> tuple[set[str], set[str]]:
    """(prepared, rejected) content digests, from one listing of the ledger rather than a lookup per file."""
    prefix = f"ledger/{dataset}/"
    prepared, rejected = set(), set()
    for path in lake.list(LEDGER_CONTAINER, prefix):
        name = path[len(prefix) :]
        if name.startswith("rejected/"):
            rejected.add(name.removeprefix("rejected/").removesuffix(".json"))
        elif "/" not in name and name.endswith(".json"):
            prepared.add(name.removesuffix(".json"))
    return prepared, rejected
