"""Where each data lake backend puts the objects, how local writes stay atomic, and open_datalake's URL forms
and configuration errors (the shared behaviour of all three backends is in test_datalake.py)."""

from __future__ import annotations

import os
import pathlib

import pytest

from tasks.data.datalake import (
    CONTAINERS,
    AzureBlobDataLake,
    DataLakeError,
    LocalDataLake,
    S3DataLake,
    open_datalake,
)
from tests.support.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from tests.tasks.conftest import S3_BUCKET
from tests.tasks.upload_faults import MIB, fail_reading, random_file

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
