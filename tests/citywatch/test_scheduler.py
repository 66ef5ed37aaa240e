"""Timers: due keys come out in order, a new setting replaces the old, nothing early."""

from __future__ import annotations

import asyncio

from citywatch.clock import ManualClock, SystemClock
from citywatch.scheduler import Timers


async def _never(due: list[tuple[object, float]], now: float) -> None:
    raise AssertionError("not expected to fire")


def test_pop_due_in_order_with_replacement_and_cancel() -> None:
    t = Timers(ManualClock(100.0), _never)
    t.set("a", 105.0)
    t.set("b", 103.0)
    t.set("c", 104.0)
    t.set("a", 101.0)  # replaces 105
    t.set("c", None)  # cancels
    assert t.next_at() == 101.0
    assert t.pop_due(102.0) == [("a", 101.0)]
    assert t.pop_due(110.0) == [("b", 103.0)]
    assert t.pop_due(1e12) == [] and len(t) == 0


async def test_run_fires_at_the_instant_and_wakes_for_an_earlier_one() -> None:
    clock = SystemClock()
    fired: list[tuple[object, float, float]] = []
    done = asyncio.Event()

    async def on_due(due: list[tuple[object, float]], now: float) -> None:
        fired.extend((k, at, now) for k, at in due)
        if len(fired) == 2:
            done.set()

    t = Timers(clock, on_due)
    task = asyncio.create_task(t.run())
    start = clock.now()
    t.set("late", start + 0.3)
    await asyncio.sleep(0)  # the runner now sleeps until +0.3
    t.set("early", start + 0.1)
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    assert [k for k, _, _ in fired] == ["early", "late"]
    for _, at, now in fired:
        assert 0 <= now - at < 0.05
