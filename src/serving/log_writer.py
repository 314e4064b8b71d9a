"""JSON lines to a size-rotated file that several processes share, or to stdout; a failed write is counted."""

from __future__ import annotations

import fcntl
import functools
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from serving.prediction_log import to_line

logger = logging.getLogger("sluice.prediction_log")

# Degraded after this many failed writes in a row (the next good write clears it). One failure
# is a hiccup; ten in a row means the destination is gone or full, and every line is being lost.
DEGRADED_AFTER = 10
# At most one warning per interval, carrying the count, instead of one traceback per request.
REPORT_INTERVAL_S = 60.0


def backup_name(default_name: str) -> str:
    """`predictions.jsonl.2` -> `predictions.2.jsonl`: backups keep the extension, so `predictions*.jsonl` matches."""
    base, _, number = default_name.rpartition(".")
    root, extension = os.path.splitext(base)
    return f"{root}.{number}{extension}"


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # rare on a regular file, e.g. when the disk fills up mid-line
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


class SharedRotatingFile(logging.handlers.RotatingFileHandler):
    """The stdlib's size rotation (rename chain, `backupCount`), safe when several processes append to one file.

    Locally the champion, the challenger and the router append to one predictions.jsonl.
    RotatingFileHandler alone decides from its own stream, so two processes would each rotate
    and lose files. Here every write holds an exclusive flock on `<file>.lock` while it checks
    the size, rotates if needed (doRollover) and writes. Each rotation appends one byte to the
    lock file, so its size is a rotation counter: a process that sees it change reopens the
    path (as WatchedFileHandler does) instead of appending to a backup another process renamed.
    That costs two lseek() per line instead of a stat() of the path. Each line is one write()
    to an O_APPEND descriptor (the text stream's buffer is never used), so lines never
    interleave. Only regular files rotate: /dev/full, a FIFO or /dev/stdout are written as is.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int, backups: int):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        super().__init__(path, mode="a", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.namer = backup_name
        # Only a regular file can be rotated (RotatingFileHandler never renames others, bpo-45401).
        # Every writer of one takes the lock and follows rotations, even one that never rotates
        # itself: otherwise it would keep appending to a backup another process renamed.
        regular = os.path.isfile(self.baseFilename)
        self.rotates = regular and max_bytes > 0 and backups > 0  # RotatingFileHandler's own rule
        self._fd = self.stream.fileno()
        self._lock_fd: int | None = None
        self._generation = 0
        if regular:
            self._lock_fd = os.open(self.baseFilename + ".lock", os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._reopen()  # under the lock, so that the file and the rotation count agree
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _reopen(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = open(self.baseFilename, self.mode, encoding=self.encoding)  # noqa: SIM115
        self._fd = self.stream.fileno()
        if self._lock_fd is not None:
            self._generation = os.lseek(self._lock_fd, 0, os.SEEK_END)

    def write_line(self, data: bytes) -> None:
        """Append one whole line, rotating first when it would take the file to `maxBytes`."""
        lock_fd = self._lock_fd
        if lock_fd is None:
            if self.stream is None:
                self._reopen()
            _write_all(self._fd, data)
            return
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            if self.stream is None or os.lseek(lock_fd, 0, os.SEEK_END) != self._generation:
                self._reopen()  # another process rotated the file (or our own rollover failed half-way)
            if self.rotates:
                size = os.lseek(self._fd, 0, os.SEEK_END)
                # RotatingFileHandler.shouldRollover's rule: roll over before a line that would reach maxBytes.
                if size and size + len(data) >= self.maxBytes:
                    self.doRollover()
                    os.write(lock_fd, b"r")
                    self._reopen()
            _write_all(self._fd, data)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        super().close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class LineWriter:
    """Writes records as JSON lines to a file (rotated by size), to stdout (`-`), or nowhere (None).

    A write that fails (disk full, volume gone, /dev/full) loses that line and nothing else: it is
    counted (`errors`), reported at most once per REPORT_INTERVAL_S with the count, and after
    DEGRADED_AFTER failures in a row the writer is `degraded` until a write succeeds again.
    """

    def __init__(
        self,
        destination: str | os.PathLike[str] | None,
        *,
        max_bytes: int = 0,
        backups: int = 0,
        label: str = "prediction log",
        degraded_after: int = DEGRADED_AFTER,
        report_interval_s: float = REPORT_INTERVAL_S,
    ):
        self.label = f"{label} {destination}"
        self.errors = 0
        self.consecutive_errors = 0
        self._degraded_after = degraded_after
        self._report_interval_s = report_interval_s
        self._unreported = 0
        self._last_report = float("-inf")
        self._last_recovery_report = float("-inf")
        self._file: SharedRotatingFile | None = None
        self._sink: Callable[[bytes], None] | None = None
        if destination is None:
            return
        if str(destination) == "-":
            self._sink = functools.partial(_write_all, sys.stdout.fileno())
        else:
            self._file = SharedRotatingFile(destination, max_bytes=max_bytes, backups=backups)
            self._sink = self._file.write_line

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    @property
    def degraded(self) -> bool:
        """True after `degraded_after` failed writes in a row, until the next write succeeds."""
        return self.consecutive_errors >= self._degraded_after

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append `record` as one line; False (and counted) if it could not be written. Never raises."""
        sink = self._sink
        if sink is None:
            return True
        try:
            sink(to_line(record))
        except Exception as exc:  # noqa: BLE001 - a log line must never cost a client its answer
            self._failed(exc)
            return False
        if self.consecutive_errors:
            self._recovered()
        return True

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.consecutive_errors += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last_report >= self._report_interval_s:
            logger.warning(
                "%s: %d write(s) failed since the last report (%s: %s); answers are unaffected, these lines are lost",
                self.label,
                self._unreported,
                type(exc).__name__,
                exc,
            )
            self._last_report, self._unreported = now, 0

    def _recovered(self) -> None:
        # Said only after a degraded spell, and at most once per interval: a flapping disk must not flood the log.
        now = time.monotonic()
        if self.degraded and now - self._last_recovery_report >= self._report_interval_s:
            logger.warning("%s: writable again after %d failed writes in a row", self.label, self.consecutive_errors)
            self._last_recovery_report = now
        self.consecutive_errors = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._sink = None
