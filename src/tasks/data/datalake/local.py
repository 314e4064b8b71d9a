"""The data lake in a local folder: one sub-folder per container, atomic writes by rename or link."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from tasks.data.datalake.base import (
    TMP_PREFIX,
    DataLake,
    DataLakeError,
    ObjectInfo,
    check_object,
    check_prefix,
    write_atomically,
)

COPY_CHUNK = 1024 * 1024


class _LocalFileError(Exception):
    """Carries an OSError from the caller's own file past the local backend's error mapping."""


class LocalDataLake(DataLake):
    """Containers are sub-folders of one local folder, created on first write."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(root).expanduser().resolve()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _file(self, container: str, path: str) -> pathlib.Path:
        check_object(container, path)
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
            write_atomically(file, lambda handle: handle.write(data), overwrite=overwrite)

    def exists(self, container: str, path: str) -> bool:
        return self._file(container, path).is_file()

    def _objects(self, container: str, prefix: str) -> Iterator[tuple[str, pathlib.Path]]:
        """(object path, file) of every object under `prefix`, in no particular order."""
        check_prefix(container, prefix)
        container_dir = self.root / container
        # walk only below the deepest folder the prefix names, not the whole container
        start = container_dir.joinpath(*prefix.split("/")[:-1])
        for folder, _dirs, files in os.walk(start):
            relative = pathlib.Path(folder).relative_to(container_dir).as_posix()
            for name in files:
                if name.startswith(TMP_PREFIX):
                    continue
                object_path = name if relative == "." else f"{relative}/{name}"
                if object_path.startswith(prefix):
                    yield object_path, pathlib.Path(folder, name)

    def list(self, container: str, prefix: str = "") -> list[str]:
        return sorted(path for path, _ in self._objects(container, prefix))

    def list_info(self, container: str, prefix: str = "") -> list[ObjectInfo]:
        found = []
        for path, file in self._objects(container, prefix):
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue  # deleted since the walk saw it
            modified = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC)
            # Every write through this class publishes a new inode (rename or link of a temp file).
            etag = f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"
            found.append(ObjectInfo(path, stat.st_size, modified, etag))
        return sorted(found, key=lambda info: info.path)

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
            write_atomically(
                pathlib.Path(local_path),
                lambda handle: shutil.copyfileobj(source, handle, COPY_CHUNK),
                overwrite=True,
            )

    def upload_from(
        self, container: str, path: str, local_path: pathlib.Path, *, overwrite: bool = False
    ) -> None:
        file = self._writable_file(container, path)

        def copy(handle: BinaryIO) -> None:
            while True:
                try:
                    chunk = source.read(COPY_CHUNK)
                except OSError as err:
                    raise _LocalFileError from err
                if not chunk:
                    return
                handle.write(chunk)

        with pathlib.Path(local_path).open("rb") as source:
            try:
                with self._errors(container, path):
                    write_atomically(file, copy, overwrite=overwrite)
            except _LocalFileError as err:
                # a failure to read the caller's file is theirs, not the lake's: raise it as
                # the OSError the other backends' SDKs let through
                raise err.__cause__ from None
