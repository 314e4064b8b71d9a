"""Fixtures for the task tests: the data lake on each backend, Azure and S3 against real emulators."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tasks.data.datalake import CONTAINERS, AzureBlobDataLake, DataLake, S3DataLake, open_datalake
from tests.support.emulators import (
    AZURITE_BLOB,
    MOTO_ACCESS_KEY,
    MOTO_REGION,
    MOTO_SECRET_KEY,
    run_azurite,
    run_moto_s3,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient

S3_BUCKET = "sluice-lake"
# Small transfer sizes make the multi-MB tests go through Azure's staged-blocks-then-commit
# upload and chunked download, the path real data set files take with the default sizes.
AZURE_TRANSFER_SIZES = {
    "max_single_put_size": 1024 * 1024,
    "max_block_size": 1024 * 1024,
    "max_single_get_size": 1024 * 1024,
    "max_chunk_get_size": 1024 * 1024,
}
BACKENDS = ("local", "azure", "s3")


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not AZURITE_BLOB.exists():
        pytest.skip(f"Azurite is not installed ({AZURITE_BLOB} is missing): run `npm ci` at the repo root")
    with run_azurite(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_moto_s3(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def moto_client(moto_endpoint: str) -> BaseClient:
    """One S3 client for the whole run, with the test bucket created: building a client costs ~0.3 s."""
    import boto3

    client = boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION,
        aws_access_key_id=MOTO_ACCESS_KEY, aws_secret_access_key=MOTO_SECRET_KEY,
    )
    client.create_bucket(Bucket=S3_BUCKET)
    return client


@pytest.fixture
def aws_env(
    moto_client: BaseClient, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Point boto3 at moto through the environment, as a deployment would, isolated from ~/.aws."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


@pytest.fixture
def azure_lake(azurite_connection_string: str) -> AzureBlobDataLake:
    """An Azurite account whose containers do not exist yet, so every test also exercises their creation."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string, **AZURE_TRANSFER_SIZES)
    for container in CONTAINERS:
        client = service.get_container_client(container)
        if client.exists():
            client.delete_container()
    return AzureBlobDataLake(service)


@pytest.fixture
def s3_lake(moto_client: BaseClient) -> S3DataLake:
    """A fresh prefix in the shared bucket per test, so tests never see each other's objects.

    The shared client keeps the suite fast; the tests that call open_datalake("s3://...") cover
    how boto3 finds the endpoint and credentials in the environment.
    """
    return S3DataLake(S3_BUCKET, f"test-{uuid.uuid4().hex[:12]}", client=moto_client)


@pytest.fixture(params=BACKENDS)
def datalake(request: pytest.FixtureRequest, tmp_path: Path) -> DataLake:
    """The same data lake API on a local folder, Azurite and a moto S3 server."""
    if request.param == "local":
        return open_datalake(str(tmp_path / "lake"))
    if request.param == "azure":
        return request.getfixturevalue("azure_lake")
    return request.getfixturevalue("s3_lake")
