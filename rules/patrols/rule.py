"""The patrol rule: the stateful wrapper around the pure rules of :mod:`rules.patrols`.

A sink for records: shifts, fixes, heartbeats, statuses and case events update
each officer's :class:`Patrol`; the touched officers are evaluated at once, and
a timer per officer fires at the instant a liveness condition would start.
Alert flags are saved as soon as they change; tracks and coverage every few
seconds (a crash loses at most those seconds of track, never a flag).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from citywatch.aio import cancel_and_wait
from citywatch.clock import Clock
from citywatch.models import (
    AlertEvent,
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    PatrolCoverage,
    Record,
    ShiftEvent,
)
from citywatch.sink import Sink
from rules.events import AlertSink
from rules.patrols import state as st
from rules.patrols.config import PatrolsConfig, Thresholds
from rules.patrols.evaluate import evaluate
from rules.patrols.grids import Assignment, Coverage, Grids
from rules.patrols.liveness import next_instant
from rules.patrols.metrics import PatrolMetrics
from rules.patrols.store import PatrolStore, from_doc, to_doc
from rules.scheduler import Timers

log = logging.getLogger(__name__)
T = TypeVar("T")
Key = tuple[str, str]
STATES = ("patrolling", "idle", "out_of_grid", "gps_lost", "offline", "on_break")
_STATE_OF = {
    "device_offline": "offline",
    "patrol_gps_lost": "gps_lost",
    "patrol_out_of_grid": "out_of_grid",
    "patrol_idle": "idle",
}


def patrol_state(p: st.Patrol) -> str | None:
    """The officer's state for people: the most serious condition that holds."""
    if not p.on_shift:
        return None
    if p.on_break:
        return "on_break"
    for rule, name in _STATE_OF.items():
        if rule in p.firing:
            return name
    return "patrolling"


class PatrolRule:
    """Supervises every officer on shift; an async context manager and a sink."""

    name = "patrols"

    def __init__(
        self,
        cfg: PatrolsConfig,
        grids: Grids | None,
        store_path: Path,
        alerts: AlertSink,
        history: Sink | None,
        metrics: PatrolMetrics,
        clock: Clock,
        *,
        flush_interval: float = 2.0,
        coverage_interval: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self.grids = grids
        self.store_path = store_path
        self.alerts = alerts
        self.history = history
        self.metrics = metrics
        self.clock = clock
        self.flush_interval = flush_interval
        self.coverage_interval = coverage_interval
        self.patrols: dict[Key, st.Patrol] = {}
        self.devices: dict[tuple[str, str], Key] = {}
        self.thresholds: dict[Key, Thresholds] = {}
        self.coverage: dict[Key, Coverage] = {}
        # Kept per officer for the shift: the grids' own cache is bounded, officers are not.
        self.assignments: dict[Key, Assignment] = {}
        self.timers = Timers(clock, self._on_due)
        self._dirty: set[Key] = set()
        self._counts: dict[str, int] = {}
        self._counted_at = -1e9
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="patrol-store")
        self._store: PatrolStore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        for name in STATES:
            metrics.officers.labels(name).set_function(self._counter(name))

    def _counter(self, name: str) -> Callable[[], float]:
        return lambda: self._state_counts().get(name, 0)

    def _state_counts(self) -> dict[str, int]:
        # One pass serves every label of a scrape.
        now = time.monotonic()
        if now - self._counted_at > 1.0:
            counts: dict[str, int] = {}
            for p in self.patrols.values():
                name = patrol_state(p)
                if name is not None:
                    counts[name] = counts.get(name, 0) + 1
            self._counts, self._counted_at = counts, now
        return self._counts

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> PatrolRule:
        t0 = time.perf_counter()
        self._store = await self._run_io(PatrolStore, self.store_path)
        store = self._store
        blobs = await self._run_io(lambda: list(store.load()))
        for blob in blobs:
            p, cov = from_doc(blob)
            key = (p.city, p.officer)
            self._adopt(key, p)
            if cov is not None and self.grids is not None:
                self.coverage[key] = Coverage.from_doc(self.grids, cov)
        log.info("restored %d officers in %.2fs", len(blobs), time.perf_counter() - t0)
        self._tasks = [
            asyncio.create_task(self.timers.run(), name="patrol-timers"),
            asyncio.create_task(self._flusher(), name="patrol-flush"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async with self._lock:
            await cancel_and_wait(self._tasks)
            await self._flush(set(self.patrols))
            await self._write_coverage(set(self.coverage))
        if self._store is not None:
            await self._run_io(self._store.close)
        self._io.shutdown(wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def reconfigure(self, cfg: PatrolsConfig, grids: Grids | None) -> None:
        """New thresholds or grids, in force from now on; the state is kept."""
        self.cfg, self.grids = cfg, grids
        for key, p in self.patrols.items():
            self._adopt(key, p)

    def _adopt(self, key: Key, p: st.Patrol) -> None:
        self.patrols[key] = p
        self.thresholds[key] = self.cfg.thresholds(p.city, p.grids, p.role)
        self.assignments.pop(key, None)
        if self.grids is not None and p.grids and not self.grids.unknown(p.grids):
            self.assignments[key] = self.grids.assignment(p.grids)
        if p.device:
            self.devices[(p.city, p.device)] = key
        self.timers.set(key, next_instant(p, self.thresholds[key]))

    # -- the sink ---------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> None:
        """Apply the observations among ``records``; evaluate the officers they touched."""
        touched: dict[Key, float] = {}
        async with self._lock:
            for r in records:
                key = self._observe(r)
                if key is not None:
                    received = getattr(r, "received_at", 0.0)
                    touched[key] = max(touched.get(key, 0.0), received)
            if touched:
                await self._evaluate(touched)

    def _observe(self, r: Record) -> Key | None:
        if isinstance(r, Fix | Heartbeat | DeviceStatus):
            key = self.devices.get((r.city, r.device))
            p = self.patrols.get(key) if key is not None else None
            if key is None or p is None or p.device != r.device:
                return None
            if isinstance(r, Fix):
                self._on_fix(key, p, r)
            elif isinstance(r, Heartbeat):
                st.on_heartbeat(p, r)
            else:
                st.on_status(p, r)
            return key
        if isinstance(r, ShiftEvent):
            return self._on_shift(r)
        if isinstance(r, CaseEvent) and r.officer:
            ckey = (r.city, r.officer)
            patrol = self.patrols.get(ckey)
            if patrol is not None:
                st.on_case(patrol, r)
                return ckey
        return None

    def _on_fix(self, key: Key, p: st.Patrol, fix: Fix) -> None:
        th = self.thresholds[key]
        dist = None
        assignment = self.assignments.get(key)
        if assignment is not None:
            dist = assignment.signed_distance_m(fix.lon, fix.lat)
        st.on_fix(p, fix, th, dist)
        cov = self.coverage.get(key)
        if cov is not None and p.active and (fix.acc is None or fix.acc <= th.idle.max_acc):
            cov.add(fix.lon, fix.lat, fix.ts)

    def _on_shift(self, ev: ShiftEvent) -> Key:
        key = (ev.city, ev.officer)
        p = self.patrols.get(key) or st.Patrol(ev.city, ev.officer)
        if ev.action == "start" and p.device and p.device != ev.device:
            self.devices.pop((p.city, p.device), None)
        st.on_shift(p, ev)
        self._adopt(key, p)
        if ev.action == "start":
            self.coverage.pop(key, None)
            if self.grids is not None:
                unknown = self.grids.unknown(p.grids)
                if unknown:
                    log.warning("officer %s: grid cells not in grids_file: %s", p.officer, unknown)
                self.coverage[key] = Coverage(self.grids, p.grids)
        return key

    async def _evaluate(self, touched: dict[Key, float]) -> None:
        now = self.clock.now()
        events: list[AlertEvent] = []
        flagged: set[Key] = set()
        for key, received in touched.items():
            p = self.patrols[key]
            th = self.thresholds[key]
            fired = evaluate(p, th, now)
            if fired:
                flagged.add(key)
                events.extend(fired)
                for e in fired:
                    if e.status == "firing":
                        self.metrics.delay.observe(max(0.0, time.time() - received))
            nxt = next_instant(p, th)
            # An instant already past changed nothing just now: only a new observation can.
            self.timers.set(key, nxt if nxt is not None and nxt > now else None)
            self._dirty.add(key)
            if not p.on_shift:
                await self._retire(key)
        if events:
            await self.alerts.emit(events)
        if flagged:
            # Flags are saved at once: a restart must not raise them again.
            await self._flush(flagged)

    async def _retire(self, key: Key) -> None:
        """A shift ended: write its coverage once more and stop timing it."""
        await self._write_coverage({key})
        self.timers.set(key, None)

    async def _on_due(self, due: list[tuple[Any, float]], now: float) -> None:
        async with self._lock:
            await self._evaluate({key: at for key, at in due if key in self.patrols})

    # -- persistence and coverage -----------------------------------------------

    async def _flush(self, keys: set[Key]) -> None:
        self._dirty -= keys
        rows = []
        for key in keys:
            p = self.patrols.get(key)
            if p is not None:
                cov = self.coverage.get(key)
                rows.append((p.city, p.officer, to_doc(p, cov.to_doc() if cov else None)))
        if rows and self._store is not None:
            await self._run_io(self._store.save, rows)

    async def _flusher(self) -> None:
        last_coverage = time.monotonic()
        while True:
            await asyncio.sleep(self.flush_interval)
            async with self._lock:
                await self._flush(set(self._dirty))
                if time.monotonic() - last_coverage >= self.coverage_interval:
                    last_coverage = time.monotonic()
                    await self._write_coverage({k for k, p in self.patrols.items() if p.on_shift})

    async def _write_coverage(self, keys: set[Key]) -> None:
        out = []
        now = self.clock.now()
        per_city: dict[str, list[tuple[float, float]]] = {}
        for key in keys:
            p, cov = self.patrols.get(key), self.coverage.get(key)
            if p is None or cov is None or p.watched_since is None:
                continue
            per_city.setdefault(p.city, []).append((cov.share, cov.distance_m))
            out.append(
                PatrolCoverage(
                    p.city,
                    p.officer,
                    p.watched_since,
                    len(cov.assigned),
                    len(cov.visited),
                    cov.distance_m,
                    now,
                )
            )
        for city, values in per_city.items():
            self.metrics.coverage.labels(city).set(sum(v[0] for v in values) / len(values))
            self.metrics.distance.labels(city).set(sum(v[1] for v in values) / len(values))
        if out and self.history is not None:
            await self.history.write(out)
