"""Finding new raw files under the raw prefix, on a local folder, Azure Blob (Azurite) and S3 (moto server)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from tasks.data import ledger
from tasks.data.arrivals import index_path, newest_raw, next_new_raw, nothing_new, raw_files
from tasks.data.datalake import open_datalake
from tasks.data.prepare import DATASET

PREFIX = "wachttijden/"
FIRST = "wachttijden/2026/11/01/wachttijden.csv"
SECOND = "wachttijden/2026/11/02/wachttijden.csv"


def prepared(lake, content: bytes, raw_file: str = FIRST) -> str:
    digest = ledger.content_digest(content)
    ledger.record(lake, DATASET, digest, raw_file=raw_file, partition="run=a", run_id="a")
    return digest


def test_a_new_file_in_the_nested_date_layout_is_found_with_its_digest(datalake):
    datalake.write_bytes("raw", FIRST, b"ID;WACHTTIJD\n1;3\n")
    datalake.write_bytes("raw", "wachttijden/2026/11/01/README.txt", b"not data")
    datalake.write_bytes("raw", "elsewhere/2026/11/01/wachttijden.csv", b"another data set")

    found = next_new_raw(datalake, PREFIX)

    assert found is not None and found.path == FIRST
    assert found.sha256 == ledger.content_digest(b"ID;WACHTTIJD\n1;3\n")
    assert found.size == len(b"ID;WACHTTIJD\n1;3\n")
    assert [i.path for i in raw_files(datalake, PREFIX)] == [FIRST]  # only CSV files under the prefix


def test_the_single_file_layout_is_found_beside_date_partitions(datalake):
    prepared(datalake, b"old")
    datalake.write_bytes("raw", FIRST, b"old")
    datalake.write_bytes("raw", "wachttijden/wachttijden.csv", b"new single file")

    found = next_new_raw(datalake, PREFIX)

    assert found is not None and found.path == "wachttijden/wachttijden.csv"


def test_the_same_content_under_another_date_is_already_processed(datalake):
    content = b"ID;WACHTTIJD\n1;3\n2;4\n"
    datalake.write_bytes("raw", FIRST, content)
    prepared(datalake, content)
    datalake.write_bytes("raw", SECOND, content)  # re-delivered under the next day's partition

    assert next_new_raw(datalake, PREFIX) is None
    assert "all 2 raw file(s) under raw/wachttijden/" in nothing_new(datalake, PREFIX)


def test_one_new_file_among_processed_and_rejected_ones(datalake):
    datalake.write_bytes("raw", FIRST, b"prepared")
    prepared(datalake, b"prepared")
    datalake.write_bytes("raw", "wachttijden/2026/11/02/broken.csv", b"rejected")
    ledger.record_rejected(datalake, DATASET, ledger.content_digest(b"rejected"),
                           raw_file="wachttijden/2026/11/02/broken.csv", partition="run=b", reason="wrong separator")
    datalake.write_bytes("raw", "wachttijden/2026/11/03/wachttijden.csv", b"new")

    found = next_new_raw(datalake, PREFIX)

    assert found is not None and found.path == "wachttijden/2026/11/03/wachttijden.csv"


def test_nothing_new_gives_none_and_says_why(datalake):
    assert next_new_raw(datalake, PREFIX) is None
    assert nothing_new(datalake, PREFIX).startswith("no raw file (*.csv) under raw/wachttijden/")
    assert newest_raw(datalake, PREFIX) is None


def test_a_rewritten_file_is_hashed_again_not_taken_from_the_index(datalake):
    datalake.write_bytes("raw", FIRST, b"content A")
    prepared(datalake, b"content A")
    assert next_new_raw(datalake, PREFIX) is None  # hashed once, now in the index
    index = json.loads(datalake.read_bytes("intermediate", index_path()))
    assert index["files"][FIRST]["sha256"] == ledger.content_digest(b"content A")

    datalake.write_bytes("raw", FIRST, b"content B", overwrite=True)  # same size, same path

    found = next_new_raw(datalake, PREFIX)
    assert found is not None and found.sha256 == ledger.content_digest(b"content B")


def test_an_unchanged_file_is_taken_from_the_index_without_reading_it(datalake):
    datalake.write_bytes("raw", FIRST, b"content A")
    assert next_new_raw(datalake, PREFIX).path == FIRST
    # The index says this exact version of the file holds content that the ledger knows: if the
    # file were read again, its real digest (not in the ledger) would make it new.
    index = json.loads(datalake.read_bytes("intermediate", index_path()))
    index["files"][FIRST]["sha256"] = prepared(datalake, b"what the index claims")
    datalake.write_bytes("intermediate", index_path(), json.dumps(index).encode(), overwrite=True)

    assert next_new_raw(datalake, PREFIX) is None


def test_files_gone_from_raw_leave_the_index(datalake):
    datalake.write_bytes("raw", FIRST, b"A")
    datalake.write_bytes("raw", SECOND, b"B")
    prepared(datalake, b"A")
    prepared(datalake, b"B", SECOND)
    next_new_raw(datalake, PREFIX)
    datalake.delete("raw", FIRST)

    next_new_raw(datalake, PREFIX)

    assert set(json.loads(datalake.read_bytes("intermediate", index_path()))["files"]) == {SECOND}


def test_oldest_first_by_modification_time_then_path(tmp_path):
    lake = open_datalake(str(tmp_path / "lake"))
    for path in (FIRST, SECOND, "wachttijden/wachttijden.csv"):
        lake.write_bytes("raw", path, path.encode())
    day = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    # The single file arrived first, then the 2nd, then the 1st (a late delivery).
    for path, offset in ((FIRST, 3), (SECOND, 2), ("wachttijden/wachttijden.csv", 1)):
        os.utime(tmp_path / "lake" / "raw" / path, (day + offset, day + offset))

    assert [f.path for f in raw_files(lake, PREFIX)] == ["wachttijden/wachttijden.csv", SECOND, FIRST]
    assert next_new_raw(lake, PREFIX).path == "wachttijden/wachttijden.csv"
    assert newest_raw(lake, PREFIX).path == FIRST
    prepared(lake, b"wachttijden/wachttijden.csv")
    assert next_new_raw(lake, PREFIX).path == SECOND


@pytest.mark.parametrize("damage", [b"{not json", b"[]"])
def test_a_damaged_index_only_costs_a_rehash(tmp_path, damage):
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", FIRST, b"A")
    lake.write_bytes("intermediate", index_path(), damage)

    assert next_new_raw(lake, PREFIX).path == FIRST
    assert json.loads(lake.read_bytes("intermediate", index_path()))["files"][FIRST]["sha256"]
