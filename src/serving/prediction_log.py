"""Prediction and forwarding log records, bounded per request, as single JSON lines."""

from __future__ import annotations

import hashlib
import json
import time
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
# Distinct unseen values listed per feature in one record (the metric counts every row).
MAX_UNSEEN_VALUES = 20


_second_cache: list[Any] = [None, ""]  # [whole second, its "YYYY-MM-DDTHH:MM:SS"]


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, the format Elasticsearch and pandas both parse without hints.

    The date and time of day are formatted once per second: datetime's isoformat per line was
    1.5 us of the event loop per request.
    """
    now = time.time()
    second = int(now)
    if second != _second_cache[0]:
        _second_cache[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


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
    outputs: Sequence[float] | Sequence[Sequence[float]] | None,
    latency_ms: float,
    error: str | None = None,
    max_input_rows: int | None = None,
    unseen_categories: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """One model server record: what was asked, what was answered, how long it took, and whether it failed.

    Inputs of more than `max_input_rows` rows are logged as `{"rows": n, "sha256": digest}` (see
    inputs_digest) instead of their values. Outputs are always logged whole: the shadow report
    compares them value by value, and they are one number per row, at most --max-rows of them.
    `unseen_categories` flags values of open features the model never saw (answered through its
    out-of-vocabulary bucket): {feature: first MAX_UNSEEN_VALUES distinct values}, else null.
    """
    return {
        "timestamp": utc_timestamp(),
        "request_id": request_id,
        "role": role,
        "model_name": model_name,
        "model_version": model_version,
        "inputs": bounded_inputs(inputs, max_input_rows),
        # One number per row (a regression), or one list per row (an image model's class probabilities).
        "outputs": None if outputs is None else [float(v) if type(v) is not list else [float(x) for x in v]
                                                  for v in outputs],
        "latency_ms": round(float(latency_ms), 3),
        "status": "ok" if error is None else "error",
        "error": error,
        "unseen_categories": (
            {name: list(values[:MAX_UNSEEN_VALUES]) for name, values in unseen_categories.items()}
            if unseen_categories
            else None
        ),
    }


def bounded_inputs(inputs: Mapping[str, Sequence[Any]] | None, max_rows: int | None) -> dict[str, Any] | None:
    """The inputs as {column: values}, or {"rows": n, "sha256": digest} when they have more than `max_rows` rows."""
    if inputs is None:
        return None
    # Checked request columns are lists already (and of equal length); copy anything else.
    columns = {name: values if type(values) is list else list(values) for name, values in inputs.items()}
    rows = max(map(len, columns.values()), default=0)
    if max_rows is None or rows <= max_rows:
        return columns
    return {"rows": rows, "sha256": inputs_digest(columns)}


def inputs_digest(columns: Mapping[str, Sequence[Any]]) -> str:
    """sha256 (hex) of the inputs as compact UTF-8 JSON with sorted column names, so a request can be matched later."""
    if orjson is not None:
        try:
            return hashlib.sha256(orjson.dumps(columns, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except TypeError:
            pass
    text = json.dumps(columns, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


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
