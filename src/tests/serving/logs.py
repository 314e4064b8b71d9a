"""Read JSON-lines logs written by running servers, waiting (bounded) for lines that are written after the response."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

# A server writes its log line after the response is on its way, so a test that reads right
# after the answer can be first; on a loaded 2-core machine that gap reached tens of ms.
LOG_WAIT_S = 10.0


def read_records(path: Path) -> list[dict]:
    """Every complete JSON line of `path` (none if it does not exist yet)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        # A line being written right now is not complete yet; it is read on the next poll.
        text = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in text.splitlines() if line]


def wait_for_records(
    path: Path, match: Callable[[dict], bool], *, count: int = 1, timeout: float = LOG_WAIT_S
) -> list[dict]:
    """The records of `path` for which `match` holds, once there are at least `count` (else AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in read_records(path) if match(r)]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) >= count, f"{len(found)} of {count} expected records in {path} after {timeout:.0f} s"
    return found


def wait_for_request(path: Path, request_id: str, *, count: int = 1, timeout: float = LOG_WAIT_S) -> list[dict]:
    """The records of one request id, once `count` of them are there."""
    return wait_for_records(path, lambda r: r.get("request_id") == request_id, count=count, timeout=timeout)


def wait_for_text(path: Path, needle: str, *, timeout: float = LOG_WAIT_S) -> str:
    """The text of `path` once it contains `needle` (else AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if needle in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert needle in text, f"{needle!r} not in {path} after {timeout:.0f} s"
    return text
