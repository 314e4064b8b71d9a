"""The data lake API behaves the same on a local folder, Azure Blob (Azurite) and S3 (moto server)."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

from tasks.data.datalake import (
    DataLake,
    DataLakeError,
    ObjectExistsError,
    ObjectNotFoundError,
)
from tests.support.emulators import AZURITE_KEY, MOTO_SECRET_KEY
from tests.tasks.upload_faults import MIB, fail_reading, random_file

# --- the same behaviour on every backend (the `datalake` fixture runs each test three times) ---


def test_round_trip_keeps_bytes_exactly(datalake: DataLake) -> None:
    data = bytes(range(256)) * 10 + "WACHTTIJD;é\r\n".encode()
    path = "2024-05-01/run 1/wachttijden é.csv"  # spaces and non-ASCII must survive URL encoding

    datalake.write_bytes("raw", path, data)

    assert datalake.read_bytes("raw", path) == data
    assert datalake.exists("raw", path)
    assert datalake.list("raw") == [path]


def test_list_is_sorted_filtered_by_prefix_and_per_container(datalake: DataLake) -> None:
    for path in ["2024/02/b.csv", "2024/01/z.csv", "2023/12/a.csv", "2024/01/a.csv", "readme.txt"]:
        datalake.write_bytes("raw", path, path.encode())
    datalake.write_bytes("intermediate", "2024/01/clean.parquet", b"x")

    assert datalake.list("raw") == [
        "2023/12/a.csv", "2024/01/a.csv", "2024/01/z.csv", "2024/02/b.csv", "readme.txt",
    ]
    assert datalake.list("raw", "2024/") == ["2024/01/a.csv", "2024/01/z.csv", "2024/02/b.csv"]
    assert datalake.list("raw", "2024/01/") == ["2024/01/a.csv", "2024/01/z.csv"]
    # a prefix is a string prefix, not a folder name, as on blob stores
    assert datalake.list("raw", "2024/0") == ["2024/01/a.csv", "2024/01/z.csv", "2024/02/b.csv"]
    assert datalake.list("raw", "2024/01/a") == ["2024/01/a.csv"]
    assert datalake.list("raw", "2025/") == []
    assert datalake.list("intermediate") == ["2024/01/clean.parquet"]
    assert datalake.list("preprocessed") == []


def test_list_info_gives_size_time_and_an_etag_that_changes_on_rewrite(datalake: DataLake) -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC) - timedelta(minutes=5)  # generous: the emulators' clocks are this host's
    for path in ["wachttijden/2026/01/02/wachttijden.csv", "wachttijden/2026/01/01/wachttijden.csv",
                 "wachttijden/wachttijden.csv", "other/x.csv"]:
        datalake.write_bytes("raw", path, path.encode())

    infos = datalake.list_info("raw", "wachttijden/")

    assert [i.path for i in infos] == datalake.list("raw", "wachttijden/") == [
        "wachttijden/2026/01/01/wachttijden.csv", "wachttijden/2026/01/02/wachttijden.csv",
        "wachttijden/wachttijden.csv",
    ]
    assert [i.size for i in infos] == [len(i.path) for i in infos]
    assert all(before < i.modified < datetime.now(UTC) + timedelta(minutes=5) for i in infos)
    first = infos[0]
    datalake.write_bytes("raw", first.path, b"x" * first.size, overwrite=True)  # same size, same second
    (again,) = datalake.list_info("raw", first.path)
    assert again.size == first.size and again.etag != first.etag
    assert datalake.list_info("raw", "nothing/") == []
    assert datalake.list_info("preprocessed") == []  # a container never written to


def test_exists_only_for_whole_object_paths(datalake: DataLake) -> None:
    assert not datalake.exists("raw", "a/b.csv")
    datalake.write_bytes("raw", "a/b.csv", b"1")

    assert datalake.exists("raw", "a/b.csv")
    assert not datalake.exists("raw", "a")  # a "folder" is not an object
    assert not datalake.exists("raw", "a/b")
    assert not datalake.exists("intermediate", "a/b.csv")


def test_write_without_overwrite_refuses_and_keeps_the_original(
    datalake: DataLake, tmp_path: pathlib.Path
) -> None:
    datalake.write_bytes("raw", "data.csv", b"original")
    source = tmp_path / "new.csv"
    source.write_bytes(b"replacement")

    with pytest.raises(ObjectExistsError, match="raw/data.csv") as refused:
        datalake.write_bytes("raw", "data.csv", b"replacement")
    with pytest.raises(ObjectExistsError, match="raw/data.csv"):
        datalake.upload_from("raw", "data.csv", source)

    assert "overwrite=True" in str(refused.value)
    assert datalake.read_bytes("raw", "data.csv") == b"original"
    assert datalake.list("raw") == ["data.csv"]


def test_overwrite_replaces(datalake: DataLake, tmp_path: pathlib.Path) -> None:
    datalake.write_bytes("raw", "data.csv", b"first")
    datalake.write_bytes("raw", "data.csv", b"second, longer", overwrite=True)
    assert datalake.read_bytes("raw", "data.csv") == b"second, longer"

    source = tmp_path / "third.csv"
    source.write_bytes(b"3")
    datalake.upload_from("raw", "data.csv", source, overwrite=True)
    assert datalake.read_bytes("raw", "data.csv") == b"3"
    assert datalake.list("raw") == ["data.csv"]


def test_missing_object_raises_not_found_naming_it(datalake: DataLake, tmp_path: pathlib.Path) -> None:
    datalake.write_bytes("raw", "present.csv", b"x")  # the container exists, the object does not
    target = tmp_path / "out" / "missing.csv"

    with pytest.raises(ObjectNotFoundError, match="raw/missing/x.csv") as read_error:
        datalake.read_bytes("raw", "missing/x.csv")
    with pytest.raises(ObjectNotFoundError, match="raw/missing/x.csv"):
        datalake.delete("raw", "missing/x.csv")
    with pytest.raises(ObjectNotFoundError, match="raw/missing/x.csv"):
        datalake.download_to("raw", "missing/x.csv", target)
    # a container nothing was written to yet behaves the same
    with pytest.raises(ObjectNotFoundError, match="preprocessed/x.csv"):
        datalake.read_bytes("preprocessed", "x.csv")

    assert datalake.describe() in str(read_error.value)
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_delete_removes_only_that_object(datalake: DataLake) -> None:
    datalake.write_bytes("raw", "a/b.csv", b"1")
    datalake.write_bytes("raw", "a/c.csv", b"2")

    datalake.delete("raw", "a/b.csv")

    assert not datalake.exists("raw", "a/b.csv")
    assert datalake.list("raw") == ["a/c.csv"]
    assert datalake.read_bytes("raw", "a/c.csv") == b"2"


def test_a_deleted_folder_name_can_become_an_object(datalake: DataLake) -> None:
    # blob stores have no folders; the local backend must not leave one behind
    datalake.write_bytes("raw", "a/b.csv", b"1")
    datalake.delete("raw", "a/b.csv")

    datalake.write_bytes("raw", "a", b"now an object")

    assert datalake.list("raw") == ["a"]
    assert datalake.read_bytes("raw", "a") == b"now an object"


@pytest.mark.parametrize("container", ["bronze", "", "RAW", "raw/"])
def test_unknown_container_is_rejected(datalake: DataLake, container: str) -> None:
    with pytest.raises(DataLakeError, match="must be one of raw, intermediate, preprocessed") as err:
        datalake.write_bytes(container, "x.csv", b"x")
    assert not isinstance(err.value, ObjectNotFoundError)
    with pytest.raises(DataLakeError, match="unknown container"):
        datalake.list(container)
    with pytest.raises(DataLakeError, match="unknown container"):
        datalake.read_bytes(container, "x.csv")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "must not be empty"),
        ("/etc/passwd", "no leading '/'"),
        ("..", r"'\.\.' segments"),
        ("a/../../b", r"'\.\.' segments"),
        ("./a", r"'\.' or"),
        ("a//b", "empty"),
        ("a/", "must not end with '/'"),
        ("a\\b", "'/' as separator"),
        (".sluice-tmp-1234", "reserved"),
    ],
)
def test_invalid_path_is_rejected_before_touching_the_store(
    datalake: DataLake, path: str, reason: str
) -> None:
    with pytest.raises(DataLakeError, match=reason):
        datalake.write_bytes("raw", path, b"x")
    with pytest.raises(DataLakeError, match=reason):
        datalake.read_bytes("raw", path)
    with pytest.raises(DataLakeError, match=reason):
        datalake.exists("raw", path)
    assert datalake.list("raw") == []


@pytest.mark.parametrize("prefix", ["/a", "../", "a/../"])
def test_invalid_list_prefix_is_rejected(datalake: DataLake, prefix: str) -> None:
    with pytest.raises(DataLakeError, match="prefix"):
        datalake.list("raw", prefix)


def test_upload_and_download_of_a_multi_megabyte_file(datalake: DataLake, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "big.bin"
    data = random_file(source, 6 * MIB + 123)
    target = tmp_path / "downloads" / "nested" / "big.bin"

    datalake.upload_from("preprocessed", "run=1/big.bin", source)
    datalake.download_to("preprocessed", "run=1/big.bin", target)

    assert target.read_bytes() == data
    assert datalake.read_bytes("preprocessed", "run=1/big.bin") == data
    assert os.listdir(target.parent) == ["big.bin"]  # no temp file left beside it

    # download_to replaces an existing local file
    datalake.write_bytes("preprocessed", "small.bin", b"small")
    datalake.download_to("preprocessed", "small.bin", target)
    assert target.read_bytes() == b"small"


def test_upload_that_fails_midway_leaves_nothing_visible(
    datalake: DataLake, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    random_file(source, 3 * MIB)
    fail_reading(monkeypatch, source, fail_after=MIB + MIB // 2)

    with pytest.raises(OSError, match="simulated read failure"):
        datalake.upload_from("raw", "big.bin", source)

    assert datalake.list("raw") == []
    assert not datalake.exists("raw", "big.bin")
    with pytest.raises(ObjectNotFoundError):
        datalake.read_bytes("raw", "big.bin")


def test_overwrite_that_fails_midway_keeps_the_original(
    datalake: DataLake, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datalake.write_bytes("raw", "data.bin", b"original")
    source = tmp_path / "big.bin"
    random_file(source, 3 * MIB)
    fail_reading(monkeypatch, source, fail_after=MIB + MIB // 2)

    with pytest.raises(OSError, match="simulated read failure"):
        datalake.upload_from("raw", "data.bin", source, overwrite=True)

    assert datalake.read_bytes("raw", "data.bin") == b"original"
    assert datalake.list("raw") == ["data.bin"]


def test_concurrent_writers_without_overwrite_produce_exactly_one_winner(datalake: DataLake) -> None:
    # the existence check and the write are one step on every backend, so racing writers
    # cannot both succeed (a check-then-write implementation fails this now and then)
    writers = 8
    barrier = threading.Barrier(writers)
    outcomes: dict[int, str] = {}

    def write(index: int) -> None:
        barrier.wait()
        try:
            datalake.write_bytes("raw", "race.csv", f"writer {index}".encode())
            outcomes[index] = "won"
        except ObjectExistsError:
            outcomes[index] = "refused"

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [index for index, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == writers
    assert len(winners) == 1, outcomes
    assert datalake.read_bytes("raw", "race.csv") == f"writer {winners[0]}".encode()


def test_describe_and_errors_carry_no_secrets(datalake: DataLake) -> None:
    with pytest.raises(ObjectNotFoundError) as err:
        datalake.read_bytes("raw", "nothing.csv")

    for text in (datalake.describe(), repr(datalake), str(err.value)):
        assert AZURITE_KEY not in text
        assert MOTO_SECRET_KEY not in text
        assert "AccountKey" not in text
