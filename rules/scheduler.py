"""Timers at wall-clock instants: one heap, one task, exact to the loop's resolution.

Deadlines are computed, not polled: each key (a case) has at most one pending
instant; setting it again replaces the old one (lazy deletion from the heap).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Awaitable, Callable, Hashable

from citywatch.clock import Clock

Key = Hashable


class Timers:
    """Calls ``on_due(keys, now)`` when the instants set for ``keys`` have come."""

    def __init__(
        self,
        clock: Clock,
        on_due: Callable[[list[tuple[Key, float]], float], Awaitable[None]],
        *,
        batch: int = 10_000,
    ) -> None:
        self.clock = clock
        self.on_due = on_due
        self.batch = batch
        self._heap: list[tuple[float, int, Key]] = []
        self._current: dict[Key, tuple[float, int]] = {}
        self._seq = 0
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._current)

    def set(self, key: Key, at: float | None) -> None:
        """Fire ``key`` at ``at`` (replacing any earlier setting); ``None`` cancels."""
        if at is None:
            self._current.pop(key, None)
            return
        self._seq += 1
        self._current[key] = (at, self._seq)
        heapq.heappush(self._heap, (at, self._seq, key))
        if self._heap[0][1] == self._seq:
            self._wake.set()

    def next_at(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def _drop_stale(self) -> None:
        heap, current = self._heap, self._current
        while heap and current.get(heap[0][2]) != (heap[0][0], heap[0][1]):
            heapq.heappop(heap)

    def pop_due(self, now: float) -> list[tuple[Key, float]]:
        """Remove and return the keys due at ``now`` with their instants (at most ``batch``)."""
        out: list[tuple[Key, float]] = []
        heap, current = self._heap, self._current
        while heap and len(out) < self.batch:
            at, seq, key = heap[0]
            if current.get(key) != (at, seq):
                heapq.heappop(heap)
                continue
            if at > now:
                break
            heapq.heappop(heap)
            del current[key]
            out.append((key, at))
        return out

    async def run(self) -> None:
        """Fire timers until cancelled."""
        while True:
            nxt = self.next_at()
            now = self.clock.now()
            if nxt is not None and nxt <= now:
                due = self.pop_due(now)
                if due:
                    await self.on_due(due, now)
                continue
            self._wake.clear()
            timeout = None if nxt is None else nxt - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
