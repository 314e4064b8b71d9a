"""Body-read deadlines: a read past its deadline is cut off, one within it or cancelled by someone else is not."""

from __future__ import annotations

import asyncio

import pytest

from serving.deadlines import ReadDeadlines


async def guarded_read(deadlines: ReadDeadlines, wait_s: float) -> str:
    """Like the guard's body read: 'read' when the wait ends in time, 'expired' when the deadline cut it off."""
    task = asyncio.current_task()
    deadlines.start(task)
    try:
        await asyncio.sleep(wait_s)
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "expired"
    finally:
        deadlines.finish(task)
    return "read"


def test_only_reads_past_the_deadline_are_cut_off():
    async def scenario():
        deadlines = ReadDeadlines(timeout_s=0.2, tick_s=0.05)
        results = await asyncio.gather(guarded_read(deadlines, 0.01), guarded_read(deadlines, 5.0))
        await asyncio.sleep(0.1)  # the watchdog stops once nothing is being read
        return results, deadlines

    (fast, slow), deadlines = asyncio.run(scenario())
    assert (fast, slow) == ("read", "expired")
    assert deadlines.active == 0


def test_another_cancellation_is_not_mistaken_for_the_deadline():
    async def scenario():
        deadlines = ReadDeadlines(timeout_s=10.0, tick_s=0.05)
        task = asyncio.get_running_loop().create_task(guarded_read(deadlines, 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
