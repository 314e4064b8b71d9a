"""One interface to the data lake's containers, whether they live in a local folder, Azure Blob or S3."""

from __future__ import annotations

import pathlib
import urllib.parse
import urllib.request

from tasks.data.datalake.azure import AZURE_CONNECTION_STRING_ENV, AzureBlobDataLake, open_azure
from tasks.data.datalake.base import (
    CONTAINERS,
    DataLake,
    DataLakeError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
)
from tasks.data.datalake.local import LocalDataLake
from tasks.data.datalake.s3 import S3DataLake

__all__ = [
    "AZURE_CONNECTION_STRING_ENV",
    "CONTAINERS",
    "SUPPORTED_URLS",
    "AzureBlobDataLake",
    "DataLake",
    "DataLakeError",
    "LocalDataLake",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "S3DataLake",
    "open_datalake",
]

SUPPORTED_URLS = (
    "a local folder path or file:///abs/path",
    "azure://<account-name>",
    "s3://<bucket>[/<prefix>]",
)


def open_datalake(url: str, *, azure_connection_string: str | None = None) -> DataLake:
    """The data lake at `url`: a local folder, `azure://<account>` or `s3://<bucket>[/<prefix>]`."""
    supported = "; ".join(SUPPORTED_URLS)
    if not url:
        raise DataLakeError(f"empty data lake URL; use one of: {supported}")
    if "://" not in url:
        return LocalDataLake(pathlib.Path(url))

    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DataLakeError(f"file URL {url!r} names a host; use file:///abs/path")
        return LocalDataLake(pathlib.Path(urllib.request.url2pathname(parsed.path)))

    if scheme == "azure":
        return open_azure(parsed, azure_connection_string)

    if scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise DataLakeError(f"S3 URL {url!r} has no bucket; use s3://<bucket>[/<prefix>]")
        prefix = parsed.path.strip("/")
        if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
            raise DataLakeError(f"S3 URL {url!r} has an empty, '.' or '..' segment in its prefix")
        return S3DataLake(bucket, prefix)

    raise DataLakeError(f"unsupported data lake URL scheme {parsed.scheme!r}; use one of: {supported}")
