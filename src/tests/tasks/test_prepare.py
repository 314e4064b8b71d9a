"""prepare_dataset's task functions on a real local data lake: partitions, reports, and nothing lost."""

import json

import pytest

from models.wachttijden.schema import FEATURES, TARGET
from tasks.data import ledger
from tasks.data.datalake import open_datalake
from tasks.data.prepare import (
    SUCCESS_MARKER,
    clean_validated,
    complete_partitions,
    partition_for,
    read_split,
    split_clean,
    validate_raw,
)
from tasks.data.validation import DataValidationError

RAW = "wachttijden/wachttijden.csv"


@pytest.fixture
def lake(tmp_path, small_raw_csv):
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", RAW, small_raw_csv.read_bytes())
    return lake


def run_all(lake, partition):
    validate_raw(lake, RAW, partition)
    clean_validated(lake, partition)
    return split_clean(lake, partition)


def test_partition_should_be_a_safe_path_segment_stable_per_run():
    assert partition_for("manual__2026-11-23T16:40:00.123+00:00") == "run=manual__2026-11-23T16_40_00.123_00_00"
    assert partition_for("scheduled__x") == partition_for("scheduled__x")


def test_should_split_into_the_runs_own_partition_with_a_marker_written_last(lake):
    summary = run_all(lake, "run=a")
    rows = summary["rows"]
    assert sum(rows.values()) == 3_000 - 11  # the generator plants 11 dirty rows in 3,000
    assert rows["train"] == int(0.8 * sum(rows.values()))
    train = read_split(lake, "run=a", "train")
    assert list(train.columns) == [*FEATURES, TARGET] and len(train) == rows["train"]
    assert json.loads(lake.read_bytes("preprocessed", f"wachttijden/run=a/{SUCCESS_MARKER}"))["rows"] == rows
    report = json.loads(lake.read_bytes("intermediate", "wachttijden/run=a/validation.json"))
    assert report["ok"] and report["valid_rows"] == sum(rows.values())


def test_two_runs_write_separate_partitions_and_a_rerun_changes_nothing(lake):
    first = run_all(lake, "run=a")
    before = lake.read_bytes("preprocessed", "wachttijden/run=a/train.parquet")
    assert run_all(lake, "run=a") == first
    assert lake.read_bytes("preprocessed", "wachttijden/run=a/train.parquet") == before
    run_all(lake, "run=b")
    assert complete_partitions(lake) == ["run=a", "run=b"]


def test_an_incomplete_partition_is_never_offered_or_read(lake):
    run_all(lake, "run=a")
    validate_raw(lake, RAW, "run=b")
    clean_validated(lake, "run=b")
    lake.write_bytes("preprocessed", "wachttijden/run=b/train.parquet", b"half")
    assert complete_partitions(lake) == ["run=a"]
    with pytest.raises(FileNotFoundError, match="not complete"):
        read_split(lake, "run=b", "train")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda data: data.replace(b";", b","), "wrong separator"),
        (lambda data: data.replace(b"ROAZ_REGIO", b"REGIO", 1), "missing column(s): ROAZ_REGIO"),
        (lambda data: data.split(b"\n", 1)[0], "no data rows"),
    ],
)
def test_a_corrupt_raw_file_fails_with_the_report_and_leaves_preprocessed_untouched(lake, corrupt, message):
    run_all(lake, "run=good")
    good = {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")}
    lake.write_bytes("raw", RAW, corrupt(lake.read_bytes("raw", RAW)), overwrite=True)
    with pytest.raises(DataValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_raw(lake, RAW, "run=bad")
    report = lake.read_bytes("intermediate", "wachttijden/run=bad/validation.txt").decode()
    assert "FAILED" in report and message in report
    assert {p: lake.read_bytes("preprocessed", p) for p in lake.list("preprocessed")} == good
    with pytest.raises(DataValidationError, match="validate first"):
        clean_validated(lake, "run=bad")  # even if someone skipped validation
    assert not lake.exists("intermediate", "wachttijden/run=bad/clean.parquet")
    # The refused content is in the ledger, so runs looking for new files pass it by.
    digest = ledger.content_digest(lake.read_bytes("raw", RAW))
    assert digest in ledger.known_digests(lake, "wachttijden")[1]
    entry = json.loads(lake.read_bytes("intermediate", ledger.rejected_path("wachttijden", digest)))
    assert message in entry["reason"] and entry["partition"] == "run=bad"


class TestLedgerOfPreparedContent:
    def test_new_content_passes_and_the_validated_digest_is_what_gets_recorded(self, lake):
        from tasks.data.prepare import check_new_raw, record_prepared

        assert check_new_raw(lake, RAW) == RAW
        validated = validate_raw(lake, RAW, "run=a")
        clean_validated(lake, "run=a")
        split_clean(lake, "run=a")
        entry = record_prepared(lake, validated, "run=a", "a")
        assert entry["sha256"] == validated["sha256"] and entry["partition"] == "run=a"

    def test_prepared_content_is_refused_with_the_earlier_run_named_even_under_another_name(self, lake):
        from tasks.data.prepare import AlreadyPrepared, check_new_raw, record_prepared

        record_prepared(lake, validate_raw(lake, RAW, "run=a"), "run=a", "manual__a")
        lake.write_bytes("raw", "wachttijden/2026/11/29/copy.csv", lake.read_bytes("raw", RAW))
        with pytest.raises(AlreadyPrepared, match=r"run manual__a prepared into preprocessed/wachttijden/run=a"):
            check_new_raw(lake, "wachttijden/2026/11/29/copy.csv")

    def test_one_changed_byte_is_new_content(self, lake):
        from tasks.data.prepare import check_new_raw, record_prepared

        record_prepared(lake, validate_raw(lake, RAW, "run=a"), "run=a", "a")
        lake.write_bytes("raw", "wachttijden/changed.csv", lake.read_bytes("raw", RAW) + b"\n")
        assert check_new_raw(lake, "wachttijden/changed.csv") == "wachttijden/changed.csv"
