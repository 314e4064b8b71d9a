"""The data lake in an S3 bucket: one key prefix per data lake container."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from tasks.data.datalake import base as lake

if TYPE_CHECKING:  # boto3 is imported only when an S3 data lake is opened
    from botocore.client import BaseClient


class S3DataLake(lake.DataLake):
    """Containers are key prefixes `<prefix>/<container>/` in one existing bucket."""

    def __init__(self, bucket: str, prefix: str = "", *, client: BaseClient | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # boto3 resolves credentials, region and AWS_ENDPOINT_URL from the environment
        self.client = client if client is not None else boto3.session.Session().client("s3")
        self._check_bucket()

    def describe(self) -> str:
        return f"S3 bucket {self.bucket}/{self.prefix}" if self.prefix else f"S3 bucket {self.bucket}"

    def _container_prefix(self, container: str) -> str:
        return f"{self.prefix}/{container}/" if self.prefix else f"{container}/"

    def _key(self, container: str, path: str) -> str:
        lake.check_object(container, path)
        return self._container_prefix(container) + path

    @contextlib.contextmanager
    def _errors(self, container: str, path: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise self._not_found(container, path) from err
            if code in ("412", "PreconditionFailed", "ConditionalRequestConflict"):
                raise self._exists_error(container, path) from err
            raise lake.DataLakeError(f"{container}/{path} in {self.describe()}: S3 error {code}") from err
        except BotoCoreError as err:
            # client-side errors (no credentials, endpoint unreachable) carry no secrets
            raise lake.DataLakeError(f"{container}/{path} in {self.describe()}: {err}") from err

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise lake.DataLakeError(f"S3 bucket {self.bucket!r} does not exist; create it first") from err
            raise lake.DataLakeError(f"S3 bucket {self.bucket!r} is not accessible: S3 error {code}") from err
        except BotoCoreError as err:
            raise lake.DataLakeError(f"S3 bucket {self.bucket!r} could not be checked: {err}") from err

    def _put(self, key: str, body: bytes | BinaryIO, *, overwrite: bool) -> None:
        # One PutObject is atomic: S3 never shows a partial object. If-None-Match: * makes
        # S3 (and moto) refuse the put when the key exists, in the same request, so there is
        # no head-then-put race. A single put is limited to 5 GB, far above this lake's files.
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)

    def read_bytes(self, container: str, path: str) -> bytes:
        key = self._key(container, path)
        with self._errors(container, path):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write_bytes(self, container: str, path: str, data: bytes, *, overwrite: bool = False) -> None:
        key = self._key(container, path)
        with self._errors(container, path):
            self._put(key, data, overwrite=overwrite)

    def exists(self, container: str, path: str) -> bool:
        key = self._key(container, path)
        try:
            with self._errors(container, path):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except lake.ObjectNotFoundError:
            return False
        return True

    def list(self, container: str, prefix: str = "") -> list[str]:
        return [info.path for info in self.list_info(container, prefix)]

    def list_info(self, container: str, prefix: str = "") -> list[lake.ObjectInfo]:
        lake.check_prefix(container, prefix)
        base = self._container_prefix(container)
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        with self._errors(container, prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                found.extend(
                    lake.ObjectInfo(item["Key"][len(base) :], item["Size"], item["LastModified"], item["ETag"])
                    for item in page.get("Contents", [])
                )
        return sorted(found, key=lambda info: info.path)

    def delete(self, container: str, path: str) -> None:
        key = self._key(container, path)
        with self._errors(container, path):
            # DeleteObject succeeds on a missing key, so ask first to report it; a concurrent
            # delete between the two calls ends in the same state
            self.client.head_object(Bucket=self.bucket, Key=key)
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def download_to(self, container: str, path: str, local_path: pathlib.Path) -> None:
        key = self._key(container, path)
        with self._errors(container, path):
            # head first so a missing object fails before a local temp file is created
            self.client.head_object(Bucket=self.bucket, Key=key)
            lake.write_atomically(
                pathlib.Path(local_path),
                lambda handle: self.client.download_fileobj(self.bucket, key, handle),
                overwrite=True,
            )

    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        key = self._key(container, path)
        # PutObject with the open file rather than upload_file: the transfer manager does not
        # accept IfNoneMatch, and botocore streams a file body without loading it in memory
        with pathlib.Path(local_path).open("rb") as source, self._errors(container, path):
            self._put(key, source, overwrite=overwrite)
