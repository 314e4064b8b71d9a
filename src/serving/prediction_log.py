"""Prediction and forwarding log records as single JSON lines, and an append-only writer for them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

try:
    import orjson
except ImportError:  # the pipelines environment has no orjson; the servers do
    orjson = None

ROLE_HEADER = "x-sluice-role"
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_ROLE = "primary"
# Roles the shadow report understands; other header values are kept verbatim (clipped) so nothing is lost.
KNOWN_ROLES = ("primary", "champion", "shadow")
_MAX_ROLE_LENGTH = 32


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, the format Elasticsearch and pandas both parse without hints."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def role_from_header(value: str | None) -> str:
    """The caller's role, `primary` when the header is absent or blank."""
    if not value or not value.strip():
        return DEFAULT_ROLE
    return value.strip().lower()[:_MAX_ROLE_LENGTH]


def prediction_record(
    *,
    request_id: str,
    role: str,
    model_name: str,
    model_version: str,
    inputs: Mapping[str, Sequence[Any]] | None,
    outputs: Sequence[float] | None,
    latency_ms: float,
    error: str | None = None,
) -> dict[str, Any]:
    """One model server record: what was asked, what was answered, how long it took, and whether it failed."""
    return {
        "timestamp": utc_timestamp(),
        "request_id": request_id,
        "role": role,
        "model_name": model_name,
        "model_version": model_version,
        "inputs": None if inputs is None else {name: list(values) for name, values in inputs.items()},
        "outputs": None if outputs is None else [float(v) for v in outputs],
        "latency_ms": round(float(latency_ms), 3),
        "status": "ok" if error is None else "error",
        "error": error,
    }


def forward_record(
    *,
    request_id: str,
    role: str,
    target: str,
    url: str,
    status_code: int | None,
    latency_ms: float,
    error: str | None = None,
) -> dict[str, Any]:
    """One router record per forwarded call; `status_code` is None when no HTTP answer came back."""
    ok = error is None and status_code is not None and 200 <= status_code < 300
    return {
        "timestamp": utc_timestamp(),
        "request_id": request_id,
        "role": role,
        "target": target,
        "url": url,
        "status_code": status_code,
        "latency_ms": round(float(latency_ms), 3),
        "status": "ok" if ok else "error",
        "error": error,
    }


def to_line(record: Mapping[str, Any]) -> bytes:
    """The record as one UTF-8 JSON line (no embedded newlines: json escapes them).

    orjson (in the serving image) writes the same compact UTF-8 JSON about ten times faster than
    json.dumps; the line is built on the server's event loop for every request. json remains for
    what orjson refuses (e.g. lone surrogates) and where orjson is not installed.
    """
    if orjson is not None:
        try:
            return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            pass
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class JsonLinesWriter:
    """Appends whole lines with one write() each, so several processes can share one file safely.

    A file opened with O_APPEND gets each write() placed at the end atomically on local file
    systems, so lines from different servers never interleave; Python's buffered text files
    would split long lines into several writes. `-` writes to stdout for a log shipper.
    """

    def __init__(self, destination: str | os.PathLike[str] | None):
        self._fd: int | None = None
        self._owns_fd = False
        if destination is None:
            return
        if str(destination) == "-":
            self._fd = sys.stdout.fileno()
        else:
            os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
            self._fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._owns_fd = True

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._fd is None:
            return
        data = memoryview(to_line(record))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._owns_fd and self._fd is not None:
            os.close(self._fd)
        self._fd = None
