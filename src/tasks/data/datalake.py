"""One interface to the data lake's containers, whether they live in a local folder, Azure Blob or S3."""

from __future__ import annotations

import abc
import contextlib
import os
import pathlib
import secrets
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # the SDKs are imported only by the backend that needs them
    from azure.storage.blob import BlobClient, BlobServiceClient
    from botocore.client import BaseClient

CONTAINERS: tuple[str, ...] = ("raw", "intermediate", "preprocessed")

AZURE_CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
SUPPORTED_URLS = (
    "a local folder path or file:///abs/path",
    "azure://<account-name>",
    "s3://<bucket>[/<prefix>]",
)

# Temporary files of in-flight local writes start with this; list() skips them and object
# paths may not use it, so a half-written file can never be mistaken for an object.
_TMP_PREFIX = ".sluice-tmp-"
_COPY_CHUNK = 1024 * 1024


class _LocalFileError(Exception):
    """Carries an OSError from the caller's own file past the local backend's error mapping."""


class DataLakeError(Exception):
    """A data lake operation failed; the message names container, path and backend, never credentials."""


class ObjectNotFoundError(DataLakeError):
    """The object (or the container holding it) does not exist."""


class ObjectExistsError(DataLakeError):
    """A write without overwrite=True found an object already under that name."""


def _check_container(container: str) -> None:
    if container not in CONTAINERS:
        raise DataLakeError(f"unknown container {container!r}: must be one of {', '.join(CONTAINERS)}")


def _check_path(path: str, *, prefix: bool = False) -> None:
    """Reject paths that would mean different things on different backends."""
    what = "prefix" if prefix else "object path"
    if not isinstance(path, str):
        raise DataLakeError(f"{what} must be a str, got {type(path).__name__}")
    if not path:
        if prefix:
            return
        raise DataLakeError("object path must not be empty")
    if path.startswith("/"):
        raise DataLakeError(f"{what} {path!r} must be relative to the container (no leading '/')")
    if "\\" in path or "\0" in path:
        raise DataLakeError(f"{what} {path!r} must use '/' as separator and contain no NUL or '\\'")
    if not prefix and path.endswith("/"):
        raise DataLakeError(f"object path {path!r} must not end with '/'")
    segments = path.split("/")
    if prefix:
        # "2024/" or "2024/part-" are fine prefixes; only the complete segments are checked
        segments = segments[:-1]
    for segment in segments:
        if segment in ("", ".", ".."):
            raise DataLakeError(f"{what} {path!r} must not contain empty, '.' or '..' segments")
        if segment.startswith(_TMP_PREFIX):
            raise DataLakeError(f"{what} {path!r} must not use the reserved name prefix {_TMP_PREFIX!r}")


def _write_atomically(final: pathlib.Path, fill: Callable[[BinaryIO], object], *, overwrite: bool) -> None:
    """Write through a temp file next to `final` and publish it in one rename/link.

    The temp file lives in the same folder so the rename never crosses file systems (which
    would silently turn it into a copy). os.link fails with FileExistsError if `final`
    appeared meanwhile, which gives no-overwrite without a check-then-write race.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    # os.open with 0o666 honours the umask; tempfile.mkstemp would leave published files 0600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class DataLake(abc.ABC):
    """Objects in the containers raw, intermediate and preprocessed, addressed by '/'-separated paths."""

    @abc.abstractmethod
    def read_bytes(self, container: str, path: str) -> bytes:
        """The whole content of an object."""

    @abc.abstractmethod
    def write_bytes(self, container: str, path: str, data: bytes, *, overwrite: bool = False) -> None:
        """Create (or with overwrite=True replace) an object; it appears whole or not at all."""

    @abc.abstractmethod
    def exists(self, container: str, path: str) -> bool:
        """Whether an object exists at exactly this path."""

    @abc.abstractmethod
    def list(self, container: str, prefix: str = "") -> list[str]:
        """Sorted paths (relative to the container) of the objects whose path starts with `prefix`."""

    @abc.abstractmethod
    def delete(self, container: str, path: str) -> None:
        """Remove an object; ObjectNotFoundError if there is none."""

    @abc.abstractmethod
    def download_to(self, container: str, path: str, local_path: pathlib.Path) -> None:
        """Stream an object into `local_path`, which is replaced only once the download is complete."""

    @abc.abstractmethod
    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        """Stream a local file into an object, with the same atomicity as write_bytes.

        Errors reading `local_path` itself propagate as OSError on every backend.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data lake is, for logs and error messages; never contains secrets."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"

    def _not_found(self, container: str, path: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"{container}/{path} not found in {self.describe()}")

    def _exists_error(self, container: str, path: str) -> ObjectExistsError:
        return ObjectExistsError(
            f"{container}/{path} already exists in {self.describe()}; pass overwrite=True to replace it"
        )


class LocalDataLake(DataLake):
    """Containers are sub-folders of one local folder, created on first write."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(root).expanduser().resolve()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _file(self, container: str, path: str) -> pathlib.Path:
        _check_container(container)
        _check_path(path)
        return self.root.joinpath(container, *path.split("/"))

    def _writable_file(self, container: str, path: str) -> pathlib.Path:
        """The file for a write, refusing names that a folder cannot hold but a blob store could."""
        file = self._file(container, path)
        if file.is_dir():
            raise DataLakeError(
                f"cannot write {container}/{path} in {self.describe()}: other objects live under {path}/"
            )
        for parent in file.relative_to(self.root / container).parents:
            if parent != pathlib.Path(".") and (self.root / container / parent).is_file():
                raise DataLakeError(
                    f"cannot write {container}/{path} in {self.describe()}: "
                    f"{parent.as_posix()} is an object, so it cannot also be a folder"
                )
        return file

    @contextlib.contextmanager
    def _errors(self, container: str, path: str) -> Iterator[None]:
        try:
            yield
        except FileExistsError as err:
            raise self._exists_error(container, path) from err
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            # a folder where the object should be, or a file where a folder should be,
            # means there is no object at that path
            raise self._not_found(container, path) from err
        except OSError as err:
            raise DataLakeError(
                f"{container}/{path} in {self.describe()}: {err.strerror or type(err).__name__}"
            ) from err

    def read_bytes(self, container: str, path: str) -> bytes:
        file = self._file(container, path)
        with self._errors(container, path):
            return file.read_bytes()

    def write_bytes(self, container: str, path: str, data: bytes, *, overwrite: bool = False) -> None:
        file = self._writable_file(container, path)
        with self._errors(container, path):
            _write_atomically(file, lambda handle: handle.write(data), overwrite=overwrite)

    def exists(self, container: str, path: str) -> bool:
        return self._file(container, path).is_file()

    def list(self, container: str, prefix: str = "") -> list[str]:
        _check_container(container)
        _check_path(prefix, prefix=True)
        container_dir = self.root / container
        # walk only below the deepest folder the prefix names, not the whole container
        start = container_dir.joinpath(*prefix.split("/")[:-1])
        found = []
        for folder, _dirs, files in os.walk(start):
            relative = pathlib.Path(folder).relative_to(container_dir).as_posix()
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                object_path = name if relative == "." else f"{relative}/{name}"
                if object_path.startswith(prefix):
                    found.append(object_path)
        return sorted(found)

    def delete(self, container: str, path: str) -> None:
        file = self._file(container, path)
        with self._errors(container, path):
            if file.is_dir():
                raise FileNotFoundError(file)
            file.unlink()
        # Blob stores have no folders: drop the ones this delete emptied so that a later
        # object may take a folder's name, as it could on Azure or S3.
        container_dir = self.root / container
        for folder in file.parents:
            if folder == container_dir:
                break
            try:
                folder.rmdir()
            except OSError:
                break

    def download_to(self, container: str, path: str, local_path: pathlib.Path) -> None:
        file = self._file(container, path)
        with self._errors(container, path):
            source = file.open("rb")
        with source:
            _write_atomically(
                pathlib.Path(local_path),
                lambda handle: shutil.copyfileobj(source, handle, _COPY_CHUNK),
                overwrite=True,
            )

    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        file = self._writable_file(container, path)

        def copy(handle: BinaryIO) -> None:
            while True:
                try:
                    chunk = source.read(_COPY_CHUNK)
                except OSError as err:
                    raise _LocalFileError from err
                if not chunk:
                    return
                handle.write(chunk)

        with pathlib.Path(local_path).open("rb") as source:
            try:
                with self._errors(container, path):
                    _write_atomically(file, copy, overwrite=overwrite)
            except _LocalFileError as err:
                # a failure to read the caller's file is theirs, not the lake's: raise it as
                # the OSError the other backends' SDKs let through
                raise err.__cause__ from None


class AzureBlobDataLake(DataLake):
    """Containers are blob containers of one storage account, created on first write."""

    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service
        self._ready_containers: set[str] = set()

    def describe(self) -> str:
        return f"Azure Blob account {self.service.account_name}"

    def _blob(self, container: str, path: str) -> BlobClient:
        _check_container(container)
        _check_path(path)
        return self.service.get_blob_client(container, path)

    @contextlib.contextmanager
    def _errors(self, container: str, path: str) -> Iterator[None]:
        from azure.core.exceptions import (
            AzureError,
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        try:
            yield
        except ResourceNotFoundError as err:
            raise self._not_found(container, path) from err
        except (ResourceExistsError, ResourceModifiedError) as err:
            # upload_blob(overwrite=False) sends If-None-Match: * and reports the 409/412
            # as one of these
            raise self._exists_error(container, path) from err
        except HttpResponseError as err:
            # only the service's error code: the full message may quote request details
            raise DataLakeError(
                f"{container}/{path} in {self.describe()}: HTTP {err.status_code} "
                f"{getattr(err, 'error_code', None) or err.reason}"
            ) from err
        except AzureError as err:
            raise DataLakeError(
                f"{container}/{path} in {self.describe()}: {type(err).__name__} (is the endpoint reachable?)"
            ) from err

    def _ensure_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        if container in self._ready_containers:
            return
        with self._errors(container, ""):
            try:
                self.service.create_container(container)
            except ResourceExistsError:
                pass
        self._ready_containers.add(container)

    def read_bytes(self, container: str, path: str) -> bytes:
        blob = self._blob(container, path)
        with self._errors(container, path):
            return blob.download_blob().readall()

    def write_bytes(self, container: str, path: str, data: bytes, *, overwrite: bool = False) -> None:
        blob = self._blob(container, path)
        self._ensure_container(container)
        with self._errors(container, path):
            # A block blob becomes visible only when committed (Put Blob, or Put Block List
            # after staged blocks for large data), and overwrite=False makes the SDK send
            # If-None-Match: * with that commit, so the check and the write are one step.
            blob.upload_blob(data, overwrite=overwrite)

    def exists(self, container: str, path: str) -> bool:
        blob = self._blob(container, path)
        with self._errors(container, path):
            return blob.exists()

    def list(self, container: str, prefix: str = "") -> list[str]:
        _check_container(container)
        _check_path(prefix, prefix=True)
        client = self.service.get_container_client(container)
        try:
            with self._errors(container, prefix):
                return sorted(client.list_blob_names(name_starts_with=prefix or None))
        except ObjectNotFoundError:
            return []  # the container is created on first write; until then it is empty

    def delete(self, container: str, path: str) -> None:
        blob = self._blob(container, path)
        with self._errors(container, path):
            blob.delete_blob(delete_snapshots="include")

    def download_to(self, container: str, path: str, local_path: pathlib.Path) -> None:
        blob = self._blob(container, path)
        with self._errors(container, path):
            # download_blob fetches the first range, so a missing blob fails here, before a
            # local temp file exists
            stream = blob.download_blob()
            _write_atomically(pathlib.Path(local_path), stream.readinto, overwrite=True)

    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        blob = self._blob(container, path)
        self._ensure_container(container)
        with pathlib.Path(local_path).open("rb") as source, self._errors(container, path):
            blob.upload_blob(source, length=os.fstat(source.fileno()).st_size, overwrite=overwrite)


class S3DataLake(DataLake):
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
        _check_container(container)
        _check_path(path)
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
            raise DataLakeError(f"{container}/{path} in {self.describe()}: S3 error {code}") from err
        except BotoCoreError as err:
            # client-side errors (no credentials, endpoint unreachable) carry no secrets
            raise DataLakeError(f"{container}/{path} in {self.describe()}: {err}") from err

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise DataLakeError(f"S3 bucket {self.bucket!r} does not exist; create it first") from err
            raise DataLakeError(f"S3 bucket {self.bucket!r} is not accessible: S3 error {code}") from err
        except BotoCoreError as err:
            raise DataLakeError(f"S3 bucket {self.bucket!r} could not be checked: {err}") from err

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
        except ObjectNotFoundError:
            return False
        return True

    def list(self, container: str, prefix: str = "") -> list[str]:
        _check_container(container)
        _check_path(prefix, prefix=True)
        base = self._container_prefix(container)
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        with self._errors(container, prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                found.extend(item["Key"][len(base) :] for item in page.get("Contents", []))
        return sorted(found)

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
            _write_atomically(
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
        return _open_azure(parsed, azure_connection_string)

    if scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise DataLakeError(f"S3 URL {url!r} has no bucket; use s3://<bucket>[/<prefix>]")
        prefix = parsed.path.strip("/")
        if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
            raise DataLakeError(f"S3 URL {url!r} has an empty, '.' or '..' segment in its prefix")
        return S3DataLake(bucket, prefix)

    raise DataLakeError(f"unsupported data lake URL scheme {parsed.scheme!r}; use one of: {supported}")


def _open_azure(parsed: urllib.parse.SplitResult, connection_string: str | None) -> AzureBlobDataLake:
    from azure.storage.blob import BlobServiceClient

    account = parsed.netloc
    if not account or parsed.path not in ("", "/"):
        raise DataLakeError("Azure data lake URL must be azure://<account-name> with no path")
    connection_string = connection_string or os.environ.get(AZURE_CONNECTION_STRING_ENV)
    if not connection_string:
        raise DataLakeError(
            f"no connection string for Azure Blob account {account}: pass azure_connection_string "
            f"or set the environment variable {AZURE_CONNECTION_STRING_ENV}"
        )
    try:
        service = BlobServiceClient.from_connection_string(connection_string)
    except ValueError:
        # the SDK's message may quote the string, which holds the account key
        raise DataLakeError(f"invalid Azure connection string for account {account}") from None
    if service.account_name != account:
        raise DataLakeError(
            f"the Azure connection string is for account {service.account_name}, "
            f"but the data lake URL names account {account}"
        )
    return AzureBlobDataLake(service)
