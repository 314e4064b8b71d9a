"""Uploads that fail partway through: a local file that raises after some bytes, for the data lake tests."""

from __future__ import annotations

import io
import os
import pathlib

import pytest

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
