"""Lineage tags: the data partition, the raw content's hash, the code's commit and the Airflow runs."""

from __future__ import annotations

import subprocess

import pytest

from tasks.data import ledger
from tasks.data.datalake import open_datalake
from tasks.lineage import (
    DAG_ID_TAG,
    GIT_COMMIT_TAG,
    PARTITION_TAG,
    PREPARE_RUN_ID_TAG,
    RAW_SHA_TAG,
    RUN_ID_TAG,
    git_commit,
    lineage_tags,
)
from tests.support.processes import REPO_ROOT

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


@pytest.fixture
def lake(tmp_path):
    lake = open_datalake(str(tmp_path / "lake"))
    ledger.record(lake, "wachttijden", DIGEST_A, raw_file="wachttijden/a.csv", partition="run=one", run_id="one")
    ledger.record(lake, "wachttijden", DIGEST_B, raw_file="wachttijden/b.csv", partition="run=two", run_id="two")
    return lake


def head() -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_commit_is_the_checkout_of_the_dag_folder():
    assert git_commit(REPO_ROOT / "src" / "pipelines") == head()


def test_the_commit_is_unknown_outside_a_repository_or_without_git(tmp_path, monkeypatch):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "absent") == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary at all
    assert git_commit(REPO_ROOT) == "unknown"


def test_the_tags_come_from_the_dataset_event_when_it_names_the_hash_and_the_run(lake):
    tags = lineage_tags(
        lake, "run=one", dag_id="train_model", run_id="asset_triggered__1", code_folder=REPO_ROOT / "src",
        event_extra={"partition": "run=one", "raw_sha256": "c" * 64}, prepare_run_id="prepare-run",
    )
    assert tags == {
        PARTITION_TAG: "run=one", RAW_SHA_TAG: "c" * 64, GIT_COMMIT_TAG: head(), DAG_ID_TAG: "train_model",
        RUN_ID_TAG: "asset_triggered__1", PREPARE_RUN_ID_TAG: "prepare-run",
    }


def test_the_ledger_fills_in_what_the_event_does_not_carry(lake):
    tags = lineage_tags(lake, "run=two", dag_id="train_model", run_id="manual__2", code_folder=REPO_ROOT)
    assert (tags[RAW_SHA_TAG], tags[PREPARE_RUN_ID_TAG]) == (DIGEST_B, "two")
    only_run = lineage_tags(lake, "run=two", dag_id="d", run_id="r", code_folder=REPO_ROOT, prepare_run_id="p")
    assert (only_run[RAW_SHA_TAG], only_run[PREPARE_RUN_ID_TAG]) == (DIGEST_B, "p")


def test_a_partition_the_ledger_does_not_know_is_tagged_unknown(lake, tmp_path):
    tags = lineage_tags(lake, "run=other", dag_id="d", run_id="r", code_folder=tmp_path)
    assert (tags[RAW_SHA_TAG], tags[PREPARE_RUN_ID_TAG], tags[GIT_COMMIT_TAG]) == ("unknown", "unknown", "unknown")
