"""The data lake API behaves the same on a local folder, Azure Blob (Azurite) and S3 (moto server)."""

from __future__ import annotations

import io
import os
import pathlib
import threading

import pytest

from tasks.data.datalake import (
    CONTAINERS,
    AzureBlobDataLake,
    DataLake,
    DataLakeError,
    LocalDataLake,
    ObjectExistsError,
    ObjectNotFoundError,
    S3DataLake,
    open_datalake,
)
from tests.support.emulators import AZURITE_ACCOUNT, AZURITE_KEY, MOTO_SECRET_KEY
from tests.tasks.conftest import S3_BUCKET

MIB = 1024 * 1024


class FailingReader(io.BufferedReader):
    """A local file that raises partway through, like a disk or network error during an upload."""

    def __init__(self, path: pathlib.Path, fail_after: int) -> None:
        super().__init__(io.FileIO(path, "r"))
        self.fail_after = fail_after
        self.served = 0

    def _serve(self, count: int) -> None:
        self.served += count
        if self.served > self.fail_after:
            raise OSError(f"simulated read failure after {self.fail_after} bytes")

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._serve(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self._serve(len(data))
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        count = super().readinto(buffer)
        self._serve(count)
        return count

    readinto1 = readinto


def fail_reading(monkeypatch: pytest.MonkeyPatch, source: pathlib.Path, fail_after: int) -> None:
    """Make every open of `source` through pathlib return a FailingReader."""
    real_open = pathlib.Path.open

    def open_failing(self: pathlib.Path, mode: str = "r", *args, **kwargs):  # noqa: ANN002, ANN003
        if self == source and "r" in mode:
            return FailingReader(self, fail_after)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_failing)


def random_file(path: pathlib.Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


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


# --- backend specifics: where the objects land and how local writes stay atomic ---


def test_local_layout_is_one_folder_per_container(tmp_path: pathlib.Path) -> None:
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("intermediate", "2024/x.csv", b"x")

    assert (tmp_path / "lake" / "intermediate" / "2024" / "x.csv").read_bytes() == b"x"
    assert lake.describe() == f"local folder {tmp_path / 'lake'}"


def test_local_failed_write_leaves_no_object_and_no_temp_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", "keep.csv", b"keep")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # fails after the bytes are written, before commit
    with pytest.raises(DataLakeError, match="raw/new.csv .*No space left on device"):
        lake.write_bytes("raw", "new.csv", b"half" * 1000)
    with pytest.raises(DataLakeError, match="raw/keep.csv"):
        lake.write_bytes("raw", "keep.csv", b"replacement", overwrite=True)

    assert lake.list("raw") == ["keep.csv"]
    assert sorted(os.listdir(tmp_path / "lake" / "raw")) == ["keep.csv"]
    assert lake.read_bytes("raw", "keep.csv") == b"keep"


def test_local_list_skips_files_being_written(tmp_path: pathlib.Path) -> None:
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", "done.csv", b"x")
    (tmp_path / "lake" / "raw" / ".sluice-tmp-0123456789abcdef").write_bytes(b"in flight")

    assert lake.list("raw") == ["done.csv"]


def test_local_object_cannot_also_be_a_folder(tmp_path: pathlib.Path) -> None:
    lake = open_datalake(str(tmp_path / "lake"))
    lake.write_bytes("raw", "a", b"object")
    lake.write_bytes("raw", "b/c.csv", b"object")

    with pytest.raises(DataLakeError, match="a is an object"):
        lake.write_bytes("raw", "a/b.csv", b"x")
    with pytest.raises(DataLakeError, match="other objects live under b/"):
        lake.write_bytes("raw", "b", b"x")
    assert lake.list("raw") == ["a", "b/c.csv"]


def test_azure_containers_are_real_blob_containers(azure_lake: AzureBlobDataLake) -> None:
    azure_lake.write_bytes("raw", "2024/x.csv", b"x")

    containers = {container.name for container in azure_lake.service.list_containers()}
    assert "raw" in containers
    assert "preprocessed" not in containers  # created on first write, not before
    blob = azure_lake.service.get_blob_client("raw", "2024/x.csv")
    assert blob.download_blob().readall() == b"x"
    assert azure_lake.describe() == f"Azure Blob account {AZURITE_ACCOUNT}"


def test_azure_failed_staged_upload_commits_no_blob(
    azure_lake: AzureBlobDataLake, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with 1 MiB blocks the first block is staged before the failure; staged blocks stay
    # invisible because the block list is never committed
    source = tmp_path / "big.bin"
    random_file(source, 3 * MIB)
    fail_reading(monkeypatch, source, fail_after=MIB + MIB // 2)

    with pytest.raises(OSError, match="simulated read failure"):
        azure_lake.upload_from("raw", "big.bin", source)

    container = azure_lake.service.get_container_client("raw")
    assert list(container.list_blob_names()) == []
    uncommitted = [blob.name for blob in container.list_blobs(include=["uncommittedblobs"])]
    assert uncommitted == ["big.bin"]  # the staged block exists, but only as uncommitted data


def test_s3_containers_are_prefixes_in_one_bucket(aws_env: str) -> None:
    import boto3

    client = boto3.client("s3")
    with_prefix = open_datalake(f"s3://{S3_BUCKET}/team/lake/")
    without_prefix = open_datalake(f"s3://{S3_BUCKET}")
    with_prefix.write_bytes("raw", "2024/x.csv", b"x")
    without_prefix.write_bytes("preprocessed", "layout-check.csv", b"y")

    assert isinstance(with_prefix, S3DataLake)
    assert with_prefix.describe() == f"S3 bucket {S3_BUCKET}/team/lake"
    assert without_prefix.describe() == f"S3 bucket {S3_BUCKET}"
    assert client.get_object(Bucket=S3_BUCKET, Key="team/lake/raw/2024/x.csv")["Body"].read() == b"x"
    assert client.get_object(Bucket=S3_BUCKET, Key="preprocessed/layout-check.csv")["Body"].read() == b"y"
    assert with_prefix.list("preprocessed") == []  # other prefixes' objects are not visible
    without_prefix.delete("preprocessed", "layout-check.csv")


# --- open_datalake: URL forms and configuration errors ---


def test_open_bare_path_and_file_url_give_a_local_lake(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    relative = open_datalake("lake")
    from_url = open_datalake(f"file://{tmp_path}/lake")
    from_localhost_url = open_datalake(f"file://localhost{tmp_path}/lake")
    relative.write_bytes("raw", "x.csv", b"x")

    for lake in (relative, from_url, from_localhost_url):
        assert isinstance(lake, LocalDataLake)
        assert lake.root == tmp_path / "lake"
        assert lake.read_bytes("raw", "x.csv") == b"x"


def test_open_file_url_with_a_host_is_rejected() -> None:
    with pytest.raises(DataLakeError, match="file:///abs/path"):
        open_datalake("file://server/share/lake")


@pytest.mark.parametrize("url", ["gs://bucket/lake", "wasbs://raw@account.blob.core.windows.net", "ftp://x"])
def test_open_unknown_scheme_lists_the_supported_forms(url: str) -> None:
    with pytest.raises(DataLakeError, match="unsupported data lake URL scheme") as err:
        open_datalake(url)
    for form in ("file:///abs/path", "azure://<account-name>", "s3://<bucket>[/<prefix>]"):
        assert form in str(err.value)


def test_open_empty_url_is_rejected() -> None:
    with pytest.raises(DataLakeError, match="empty data lake URL"):
        open_datalake("")


def test_open_azure_without_connection_string_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)

    with pytest.raises(DataLakeError) as err:
        open_datalake("azure://devstoreaccount1")

    assert "AZURE_STORAGE_CONNECTION_STRING" in str(err.value)
    assert "azure_connection_string" in str(err.value)
    assert "devstoreaccount1" in str(err.value)


def test_open_azure_with_a_path_is_rejected() -> None:
    with pytest.raises(DataLakeError, match="azure://<account-name> with no path"):
        open_datalake("azure://devstoreaccount1/raw", azure_connection_string="unused")


def test_open_azure_with_an_invalid_connection_string_does_not_echo_it() -> None:
    secret = "AccountName=devstoreaccount1;AccountKey=c2VjcmV0;Garbage"
    with pytest.raises(DataLakeError, match="invalid Azure connection string") as err:
        open_datalake("azure://devstoreaccount1", azure_connection_string=secret)
    assert "c2VjcmV0" not in str(err.value)


def test_open_azure_for_another_account_is_rejected(azurite_connection_string: str) -> None:
    with pytest.raises(DataLakeError, match="for account devstoreaccount1.*names account prodlake") as err:
        open_datalake("azure://prodlake", azure_connection_string=azurite_connection_string)
    assert AZURITE_KEY not in str(err.value)


def test_open_azure_reads_the_connection_string_from_the_environment(
    azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string)

    lake = open_datalake(f"azure://{AZURITE_ACCOUNT}")
    lake.write_bytes("intermediate", "from-env.csv", b"env", overwrite=True)

    assert isinstance(lake, AzureBlobDataLake)
    assert lake.read_bytes("intermediate", "from-env.csv") == b"env"
    lake.delete("intermediate", "from-env.csv")


def test_open_s3_with_a_missing_bucket_names_it(aws_env: str) -> None:
    with pytest.raises(DataLakeError, match="S3 bucket 'no-such-bucket' does not exist"):
        open_datalake("s3://no-such-bucket/lake")


@pytest.mark.parametrize(
    ("url", "reason"), [("s3:///lake", "has no bucket"), ("s3://b/a//c", "'..' segment")]
)
def test_open_s3_malformed_url_is_rejected(url: str, reason: str) -> None:
    with pytest.raises(DataLakeError, match=reason):
        open_datalake(url)


def test_containers_constant() -> None:
    assert CONTAINERS == ("raw", "intermediate", "preprocessed")
