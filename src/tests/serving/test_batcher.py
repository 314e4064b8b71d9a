"""The adaptive batcher coalesces concurrent requests, keeps each caller's rows, and never delays a lone caller."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batcher import AdaptiveBatcher


def slow_sum(columns) -> np.ndarray:
    time.sleep(0.005)  # like a model call: the loop keeps queueing meanwhile
    return np.asarray([float(v) for v in columns["x"]], dtype=np.float32)


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    async def scenario():
        batcher = AdaptiveBatcher(slow_sum, max_batch_rows=256, max_wait_s=0.002)
        requests = [{"x": [str(i), str(i + 0.5)]} for i in range(64)]
        results = await asyncio.gather(*(batcher.predict(r) for r in requests))
        batcher.close()
        return requests, results, batcher.batches

    requests, results, batches = asyncio.run(scenario())
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result, np.asarray(request["x"], dtype=np.float32))
    assert batches < 8  # 64 requests, far fewer model calls


def test_batches_respect_the_row_limit():
    seen: list[int] = []

    def record(columns):
        seen.append(len(columns["x"]))
        return np.zeros(len(columns["x"]), dtype=np.float32)

    async def scenario():
        batcher = AdaptiveBatcher(record, max_batch_rows=10, max_wait_s=0.002)
        await asyncio.gather(*(batcher.predict({"x": ["1"] * 4}) for _ in range(12)))
        batcher.close()

    asyncio.run(scenario())
    assert sum(seen) == 48 and max(seen) <= 10


def test_a_lone_caller_does_not_wait_for_company():
    async def scenario():
        batcher = AdaptiveBatcher(lambda c: np.zeros(1, dtype=np.float32), max_wait_s=0.05)
        await batcher.predict({"x": ["1"]})
        start = time.perf_counter()
        for _ in range(5):
            await batcher.predict({"x": ["1"]})
        batcher.close()
        return (time.perf_counter() - start) / 5

    assert asyncio.run(scenario()) < 0.02  # well under the 50 ms wait


def test_model_errors_reach_every_caller_and_the_batcher_recovers():
    calls = {"n": 0}

    def flaky(columns):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return np.ones(len(columns["x"]), dtype=np.float32)

    async def scenario():
        batcher = AdaptiveBatcher(flaky)
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.predict({"x": ["1"]})
        result = await batcher.predict({"x": ["1", "2"]})
        batcher.close()
        return result

    np.testing.assert_array_equal(asyncio.run(scenario()), [1, 1])


def test_model_runs_off_the_event_loop_thread():
    threads = []

    def where(columns):
        threads.append(threading.current_thread().name)
        return np.zeros(1, dtype=np.float32)

    async def scenario():
        batcher = AdaptiveBatcher(where)
        await batcher.predict({"x": ["1"]})
        batcher.close()

    asyncio.run(scenario())
    assert threads[0].startswith("predict") and threads[0] != threading.main_thread().name


def test_a_one_row_batch_is_padded_to_the_minimum_call_size_and_answered_one_row():
    calls: list[list[str]] = []

    def predict(columns):
        calls.append(list(columns["x"]))
        return np.asarray([float(v) for v in columns["x"]], dtype=np.float32)

    async def scenario():
        batcher = AdaptiveBatcher(predict, min_call_rows=2)
        result = await batcher.predict({"x": ["7"]})
        batcher.close()
        return result, batcher.rows

    result, rows = asyncio.run(scenario())
    assert calls == [["7", "7"]]
    np.testing.assert_array_equal(result, np.asarray([7.0], dtype=np.float32))
    assert rows == 1
