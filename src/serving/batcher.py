"""Coalesce concurrent prediction requests into one model call, run off the event loop.

A request is a mapping of equally long columns: lists of values (the tabular model's feature
columns) or NumPy arrays whose first axis is the row (the image model's `{"images": [n, S, S, 1]}`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Columns = Mapping[str, Sequence[Any] | np.ndarray]

# Relative tolerance between predictions of one row made in batches of different sizes on other
# builds (see AdaptiveBatcher: 1 float32 ulp is 6e-8 to 1.2e-7 relative; twice that for margin).
BATCH_RTOL = 2.5e-7


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future = field(repr=False)


class AdaptiveBatcher:
    """Runs `predict(columns) -> 1-D array` on batches of queued requests, one batch at a time.

    While a batch runs in the worker thread, new requests queue up and form the next batch
    ("natural" batching: no added latency when requests arrive one at a time). Under load the
    worker also waits up to `max_wait_s` for the batch to reach the size of the previous
    one, because closed-loop clients come back at the same concurrency; when the previous
    batch held a single request it does not wait at all, so a lone client never pays the wait.
    A single worker thread keeps TensorFlow calls serial (its own intra-op threads use the cores)
    and keeps the event loop free to accept and parse requests meanwhile.

    Batch invariance (`min_call_rows`): a row's prediction must not depend on what it is batched
    with. Measured on the wachttijden model (TF 2.21 CPU, oneDNN on, 2 cores): every call of 2 to
    10,000 rows gives each row bit-identical results, but a 1-row call takes another matmul kernel
    (matrix-vector) and 12-15 % of rows come out one float32 step (ulp) away, e.g.
    12.137904167175293 alone vs 12.137903213500977 batched. So a batch of one row is padded to
    `min_call_rows` (2) by repeating it, and the extra prediction is dropped: 1-row calls measured
    979 vs 990 us median, within noise, so invariance costs no throughput here.
    Tolerance: another CPU or TensorFlow build may pick kernels by size differently; the most a
    row can then differ is 1 ulp (<= 2e-7 relative; 9.5e-7 absolute at 12 weeks). Compare
    predictions across batch sizes with `rtol=BATCH_RTOL`, not exactly, when not on this build.
    """

    def __init__(
        self,
        predict: Callable[[Columns], np.ndarray],
        *,
        max_batch_rows: int = 256,
        max_wait_s: float = 0.002,
        min_call_rows: int = 1,
    ):
        self._predict = predict
        self._max_batch_rows = max_batch_rows
        self._max_wait_s = max_wait_s
        self._min_call_rows = min_call_rows
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._last_batch_requests = 1
        self.batches = 0
        self.rows = 0

    async def predict(self, columns: Columns) -> np.ndarray:
        """Predictions for `columns` (rows in order), computed together with whatever else is queued."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")
        rows = len(next(iter(columns.values())))
        pending = _Pending(columns, rows, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    async def _collect(self) -> list[_Pending]:
        queue = self._queue
        batch = [await queue.get()]
        rows = batch[0].rows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        wanted = self._last_batch_requests
        while rows < self._max_batch_rows:
            if queue.empty():
                if len(batch) >= wanted or loop.time() >= deadline:
                    break
                # A short sleep lets the loop read the requests that are already on their way.
                await asyncio.sleep(min(0.0002, max(0.0, deadline - loop.time())))
                continue
            if rows + queue._queue[0].rows > self._max_batch_rows:  # noqa: SLF001 - peek, no public API
                break
            item = queue.get_nowait()
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [p for p in batch if not p.future.cancelled()]
            if not batch:
                continue
            self._last_batch_requests = len(batch)
            merged = {name: _concat([p.columns[name] for p in batch]) for name in batch[0].columns}
            rows = sum(p.rows for p in batch)
            if rows < self._min_call_rows:
                # Pad with copies of the first row so that the model takes its batched kernels.
                merged = {name: _pad(values, self._min_call_rows - rows) for name, values in merged.items()}
            try:
                predictions = await loop.run_in_executor(self._executor, self._predict, merged)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches += 1
            self.rows += rows
            start = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result(predictions[start : start + p.rows])
                start += p.rows

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _concat(parts: list[Any]) -> Any:
    """One column of a batch: arrays are stacked along their row axis, anything else joined as a list."""
    if isinstance(parts[0], np.ndarray):
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    return [v for part in parts for v in part]


def _pad(values: Any, extra: int) -> Any:
    if isinstance(values, np.ndarray):
        return np.concatenate([values, np.repeat(values[:1], extra, axis=0)])
    return values + values[:1] * extra
