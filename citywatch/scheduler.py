"""Timers at wall-clock instants: one heap, one task, exact to the loop's resolution.

Deadlines are computed, not polled: each key (a case) has at most one pending
instant; setting it again replaces the old one (lazy deletion from the heap).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable

from citywatch.clock import Clock

Key = Hashable
RETRY = 5.0
MAX_SLEEP = 1.0
log = logging.getLogger(__name__)


class Timers:
    """Calls ``on_due(keys, now)`` when the instants set for ``keys`` have come."""

    def __init__(
        self,
        clock: Clock,
        on_due: Callable[[list[tuple[Key, float]], float], Awaitable[None]],
        *,
        batch: int = 500,
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
        old = self._current.get(key)
        if old is not None and old[0] == at:
            return
        if len(self._heap) > 2 * len(self._current) + 1024:
            # Lazy deletion leaves stale entries; rebuild before they outgrow the live ones.
            self._heap = [(a, s, k) for k, (a, s) in self._current.items()]
            heapq.heapify(self._heap)
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
                    try:
                        await self.on_due(due, now)
                    except Exception:
                        # One failure must not stop every timer: try these again shortly.
                        log.exception(
                            "timers failed for %d keys; retrying in %.0fs", len(due), RETRY
                        )
                        for key, _ in due:
                            if key not in self._current:
                                self.set(key, now + RETRY)
                continue
            self._wake.clear()
            # Sleeping on the loop's monotonic clock: wake at least every second so that a
            # step of the wall clock (NTP, resume from suspend) is noticed.
            timeout = MAX_SLEEP if nxt is None else min(nxt - now, MAX_SLEEP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
