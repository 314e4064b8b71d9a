"""A bounded mix of valid, invalid and oversized requests on keep-alive connections (soak test, bench/soak.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.serving.small_model import SAMPLE_ROWS

# The server under soak runs with these limits, so the oversized classes stay cheap to send.
MAX_ROWS = 200
MAX_BODY_BYTES = 64 * 1024
SOAK_SERVER_ARGS = ("--max-rows", str(MAX_ROWS), "--max-body-bytes", str(MAX_BODY_BYTES))

ROWS = SAMPLE_ROWS
V1 = "/v1/models/wachttijden:predict"
V2 = "/v2/models/wachttijden/infer"


def _v2(rows: list[dict]) -> dict:
    return {
        "inputs": [
            {"name": name, "datatype": "BYTES", "shape": [len(rows)], "data": [r[name] for r in rows]}
            for name in rows[0]
        ]
    }


@dataclass(frozen=True)
class RequestClass:
    """One kind of request in the mix, how often it is sent, and the status it must get."""

    name: str
    path: str
    body: bytes
    expected: int
    weight: int


def request_mix() -> list[RequestClass]:
    """Mostly valid traffic, with every kind of bad and oversized request mixed in."""
    dump = lambda content: json.dumps(content).encode()  # noqa: E731 - local shorthand
    return [
        RequestClass("valid v1 1 row", V1, dump({"instances": ROWS[:1]}), 200, 8),
        RequestClass("valid v2 32 rows", V2, dump(_v2(ROWS * 16)), 200, 4),
        RequestClass("bad json", V1, b'{"instances": [', 400, 1),
        # ROAZ_REGIO is a closed feature (an unseen SPECIALISME is answered: test_open_categories.py).
        RequestClass("unknown category", V1, dump({"instances": [{**ROWS[0], "ROAZ_REGIO": "Onbekend"}]}), 400, 1),
        RequestClass("wrong columns", V2, dump(_v2([{**ROWS[0], "POSTCODE": "1234AB"}])), 400, 1),
        RequestClass("too many rows", V1, dump({"instances": ROWS[:1] * (MAX_ROWS + 1)}), 413, 1),
        RequestClass("body too large", V1, b'{"instances": []' + b" " * MAX_BODY_BYTES + b"}", 413, 1),
    ]


def schedule(mix: list[RequestClass]) -> Iterator[RequestClass]:
    """The mix in a fixed interleaved order, repeated forever (deterministic, so runs compare)."""
    order = [c for c in mix for _ in range(c.weight)]
    return itertools.cycle(order[::2] + order[1::2])


@dataclass
class ClassResult:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class SoakResult:
    seconds: float = 0.0
    requests: int = 0
    connection_errors: int = 0
    by_class: dict[str, ClassResult] = field(default_factory=dict)

    def unexpected(self, mix: list[RequestClass]) -> dict[str, dict[int, int]]:
        """Per class, the statuses other than the expected one (empty when every answer was right)."""
        expected = {c.name: c.expected for c in mix}
        return {
            name: {s: n for s, n in result.statuses.items() if s != expected[name]}
            for name, result in self.by_class.items()
            if any(s != expected[name] for s in result.statuses)
        }

    @property
    def server_errors(self) -> int:
        return sum(n for r in self.by_class.values() for s, n in r.statuses.items() if s >= 500)


def _encode(port: int, request: RequestClass) -> bytes:
    return (
        f"POST {request.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(request.body)}\r\n\r\n"
    ).encode() + request.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection kept open) of one response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before the status line")
    status = int(status_line.split()[1])
    length, keep_alive = 0, True
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    await reader.readexactly(length)
    return status, keep_alive


async def _worker(port: int, plan: Iterator[RequestClass], deadline: float, budget: list[int], out: SoakResult) -> None:
    encoded: dict[str, bytes] = {}
    connection = None
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        request = next(plan)
        data = encoded.setdefault(request.name, _encode(port, request))
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            start = time.perf_counter()
            writer.write(data)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout=30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            out.connection_errors += 1
            if connection is not None:
                connection[1].close()
            connection = None
            continue
        result = out.by_class.setdefault(request.name, ClassResult())
        result.latencies_s.append(time.perf_counter() - start)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        out.requests += 1
        if not keep_alive:
            writer.close()
            connection = None
    if connection is not None:
        connection[1].close()


async def soak(port: int, *, concurrency: int, seconds: float, max_requests: int) -> SoakResult:
    """Send the mix from `concurrency` keep-alive connections for `seconds` (at most `max_requests` in all)."""
    mix = request_mix()
    out = SoakResult()
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds
    # Each connection starts at another point of the schedule, so the classes overlap in time.
    plans = []
    for i in range(concurrency):
        plan = schedule(mix)
        for _ in range(i * 3):
            next(plan)
        plans.append(plan)
    await asyncio.gather(*(_worker(port, plan, deadline, budget, out) for plan in plans))
    out.seconds = time.perf_counter() - start
    return out
