"""What every data lake backend shares: the containers, the path rules, the errors and the interface."""

from __future__ import annotations

import abc
import os
import pathlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

CONTAINERS: tuple[str, ...] = ("raw", "intermediate", "preprocessed")

# Temporary files of in-flight local writes start with this; list() skips them and object
# paths may not use it, so a half-written file can never be mistaken for an object.
TMP_PREFIX = ".sluice-tmp-"


@dataclass(frozen=True)
class ObjectInfo:
    """An object as a listing shows it, without reading it."""

    path: str  # relative to the container
    size: int
    modified: datetime  # time zone aware (UTC)
    # Changes whenever the object is written, even with the same size within the same second:
    # the store's ETag on Azure and S3, inode + mtime in nanoseconds + size on a local folder.
    etag: str


class DataLakeError(Exception):
    """A data lake operation failed; the message names container, path and backend, never credentials."""


class ObjectNotFoundError(DataLakeError):
    """The object (or the container holding it) does not exist."""


class ObjectExistsError(DataLakeError):
    """A write without overwrite=True found an object already under that name."""


def check_container(container: str) -> None:
    if container not in CONTAINERS:
        raise DataLakeError(f"unknown container {container!r}: must be one of {', '.join(CONTAINERS)}")


def check_path(path: str, *, prefix: bool = False) -> None:
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
        if segment.startswith(TMP_PREFIX):
            raise DataLakeError(f"{what} {path!r} must not use the reserved name prefix {TMP_PREFIX!r}")


def check_object(container: str, path: str) -> None:
    """An object's address: a known container and a valid object path."""
    check_container(container)
    check_path(path)


def check_prefix(container: str, prefix: str) -> None:
    """A listing's address: a known container and a valid prefix."""
    check_container(container)
    check_path(prefix, prefix=True)


def write_atomically(final: pathlib.Path, fill: Callable[[BinaryIO], object], *, overwrite: bool) -> None:
    """Write through a temp file next to `final` and publish it in one rename/link.

    The temp file lives in the same folder so the rename never crosses file systems (which
    would silently turn it into a copy). os.link fails with FileExistsError if `final`
    appeared meanwhile, which gives no-overwrite without a check-then-write race.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
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
    def list_info(self, container: str, prefix: str = "") -> list[ObjectInfo]:
        """Like list(), with each object's size, modification time and ETag, from the listing alone."""

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
