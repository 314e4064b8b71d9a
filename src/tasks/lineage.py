"""Lineage of a trained model: which data, which raw file content, which code and which Airflow run made it.

For an image set the "raw file" hash is the set's snapshot digest (tasks.data.arrivals.snapshot_digest).

Every training run and every registered model version carries these tags (prepare_dataset's drift
check reads the first two from the champion):

| tag | value |
|---|---|
| `sluice.data.partition` | the preprocessed partition trained on (`run=...`) |
| `sluice.data.raw_sha256` | sha256 of the raw file that partition was prepared from ("unknown" if not recorded) |
| `sluice.git_commit` | `git rev-parse HEAD` of the DAG folder's checkout ("unknown" outside a git checkout) |
| `sluice.airflow.dag_id`, `sluice.airflow.run_id` | the training DAG run |
| `sluice.airflow.prepare_run_id` | the prepare_dataset run that wrote the partition ("unknown" if not recorded) |
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.data import ledger
from tasks.data.datalake import DataLake
from tasks.data.prepare import DATASET

PARTITION_TAG = "sluice.data.partition"
RAW_SHA_TAG = "sluice.data.raw_sha256"
GIT_COMMIT_TAG = "sluice.git_commit"
DAG_ID_TAG = "sluice.airflow.dag_id"
RUN_ID_TAG = "sluice.airflow.run_id"
PREPARE_RUN_ID_TAG = "sluice.airflow.prepare_run_id"
LINEAGE_TAGS = (PARTITION_TAG, RAW_SHA_TAG, GIT_COMMIT_TAG, DAG_ID_TAG, RUN_ID_TAG, PREPARE_RUN_ID_TAG)
UNKNOWN = "unknown"
GIT_TIMEOUT_S = 10
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def git_commit(folder: str | Path) -> str:
    """The commit checked out where `folder` lives (git-sync's checkouts are git repositories), else "unknown".

    Never raises: a missing git binary, a folder outside a repository or a slow file system
    cost the tag, not the training.
    """
    try:
        result = subprocess.run(  # noqa: S603 - a fixed command on our own folder
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and _SHA1.match(commit) else UNKNOWN


def ledger_entry_for(lake: DataLake, partition: str, dataset: str = DATASET) -> dict[str, Any] | None:
    """The ledger record of the raw content prepared into `partition`, or None.

    The ledger is keyed by content, so this reads the records one by one; it is the fallback for
    runs whose dataset event did not carry the hash (a manual run naming a partition, older events).
    """
    prepared, _ = ledger.known_digests(lake, dataset)
    for digest in sorted(prepared):
        entry = ledger.processed(lake, dataset, digest)
        if entry is not None and entry.get("partition") == partition:
            return entry
    return None


def lineage_tags(
    lake: DataLake,
    partition: str,
    *,
    dag_id: str,
    run_id: str,
    code_folder: str | Path,
    event_extra: Mapping[str, Any] | None = None,
    prepare_run_id: str | None = None,
    dataset: str = DATASET,
) -> dict[str, str]:
    """The lineage tags of a model trained on `partition` by Airflow run `dag_id`/`run_id`.

    The raw hash and the prepare run come from the dataset event (`event_extra`, its source run)
    when it names them, else from the data lake's ledger; what neither knows is "unknown".
    """
    extra = dict(event_extra or {})
    raw_sha256 = extra.get("raw_sha256")
    if not raw_sha256 or not prepare_run_id:
        entry = ledger_entry_for(lake, partition, dataset) or {}
        raw_sha256 = raw_sha256 or entry.get("sha256")
        prepare_run_id = prepare_run_id or entry.get("run_id")
    return {
        PARTITION_TAG: partition,
        RAW_SHA_TAG: str(raw_sha256 or UNKNOWN),
        GIT_COMMIT_TAG: git_commit(code_folder),
        DAG_ID_TAG: dag_id,
        RUN_ID_TAG: run_id,
        PREPARE_RUN_ID_TAG: str(prepare_run_id or UNKNOWN),
    }
