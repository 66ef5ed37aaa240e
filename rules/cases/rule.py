"""The case rule: the thin, stateful wrapper around the pure functions of ``state``.

It is a sink for records: case events are applied, the changed cases saved,
alert events emitted, and timers set for the next yellow or red instant. The
collector acknowledges a batch only once ``write`` has returned, so a case
event is never lost between the broker and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson

from citywatch.aio import cancel_and_wait, close_store
from citywatch.clock import Clock
from citywatch.models import AlertEvent, CaseEvent, Record, Rejected
from citywatch.rules.calendar import CalendarConfig, holiday_table_bytes, make_calendar
from citywatch.rules.cases.config import STAGES, CasesConfig
from citywatch.rules.cases.kpi import Kpi, KpiMetrics, KpiReporter, KpiRow, compute, kpi_rows
from citywatch.rules.cases.machine import Impossible, Replayer
from citywatch.rules.cases.metrics import CaseMetrics
from citywatch.rules.cases.state import (
    RED,
    YELLOW,
    CaseState,
    apply,
    next_instant,
    overdue_instants,
    tick,
)
from citywatch.rules.cases.store import CaseStore, Dues
from citywatch.rules.cases.view import open_case_views
from citywatch.rules.events import AlertSink
from citywatch.scheduler import Timers
from citywatch.sink import RejectSink, Sink
from citywatch.topics import DEFAULT_ROOT, case_events_topic

log = logging.getLogger(__name__)
T = TypeVar("T")
Key = tuple[str, str]


class CaseRule:
    """Supervises every open case's clocks; an async context manager and a sink."""

    name = "cases"

    def __init__(
        self,
        cfg: CasesConfig,
        calendar: CalendarConfig,
        store_path: Path,
        alerts: AlertSink,
        rejects: RejectSink,
        metrics: CaseMetrics,
        clock: Clock,
        kpi_sink: Sink | None = None,
        kpi_metrics: KpiMetrics | None = None,
        topic_root: str = DEFAULT_ROOT,
    ) -> None:
        self.rp = Replayer(cfg, {s: make_calendar(cfg.calendar_of(s), calendar) for s in STAGES})
        # Stored clocks and instants hold only while limits and calendar stay the same.
        self.fingerprint = _fingerprint(cfg, calendar)
        self.store_path = store_path
        self.alerts = alerts
        self.rejects = rejects
        self.topic_root = topic_root
        self.metrics = metrics
        self.clock = clock
        self.states: dict[Key, CaseState] = {}
        self.timers = Timers(clock, self._on_due)
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="case-store")
        self._store: CaseStore | None = None
        self._task: asyncio.Task[None] | None = None
        self.kpis = KpiReporter(
            self.query, calendar.timezone, cfg.kpi_interval, clock, kpi_sink, kpi_metrics
        )
        self._kpi_task: asyncio.Task[None] | None = None
        self._lit: dict[str, int] = {}
        self._lit_at = -1e9
        metrics.open.set_function(lambda: len(self.states))
        metrics.lights.labels(YELLOW).set_function(lambda: self._count_lit(YELLOW))
        metrics.lights.labels(RED).set_function(lambda: self._count_lit(RED))

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def query(self, fn: Callable[[CaseStore], T]) -> T:
        """``fn(store)`` run on the store's thread (the store is not thread-safe)."""
        return await self._run_io(fn, self._require_store())

    async def __aenter__(self) -> CaseRule:
        t0 = time.perf_counter()
        try:
            self._store = await self._run_io(CaseStore, self.store_path)
            store = self._require_store()
            loaded = await self._run_io(lambda: list(store.load_open()))
        except BaseException:
            # Not entered, so never exited: close the store here (it may be moved aside next).
            opened, self._store = self._store, None
            await close_store(self._io, opened, wait=False)
            raise
        if await self._run_io(store.get_meta, "config") != self.fingerprint:
            loaded = self._recompute(loaded)
            rows = [(s, n, Dues(*overdue_instants(s, self.rp))) for s, n in loaded]
            await self._run_io(store.save, rows)
            await self._run_io(store.set_meta, "config", self.fingerprint)
        for state, next_at in loaded:
            key = (state.city, state.case)
            self.states[key] = state
            # Stored instants need no calendar arithmetic; one in the past fires at once.
            self.timers.set(key, next_at)
        # The restored cases live for long: keep the collector from walking them in every
        # full pass (hundreds of milliseconds with 100,000 cases, stalling the timers).
        gc.freeze()
        self.metrics.restored.set(len(loaded))
        self.metrics.restore_seconds.set(time.perf_counter() - t0)
        log.info("restored %d open cases in %.2fs", len(loaded), time.perf_counter() - t0)
        self._task = asyncio.create_task(self.timers.run(), name="case-timers")
        self._kpi_task = asyncio.create_task(self.kpis.run(), name="case-kpi")
        return self

    def _recompute(
        self, loaded: list[tuple[CaseState, float | None]]
    ) -> list[tuple[CaseState, float | None]]:
        """Replay every open case under the limits and calendar now configured."""
        out = []
        for state, _ in loaded:
            try:
                state.derived = self.rp.replay(state.history, state.info)
            except Impossible as exc:
                log.warning(
                    "case %s: history no longer replays (%s); kept as stored", state.case, exc
                )
            # Due at once: the first tick brings the lights in line with the new limits.
            out.append((state, self.clock.now() if state.open else None))
        if out:
            log.info("limits or calendar changed: recomputed %d open cases", len(out))
        return out

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait([self._kpi_task])
        if self._task is not None:
            # Under the lock, so that no firing is cut off between its emit and its save.
            async with self._lock:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await close_store(self._io, self._store, wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._task, self._kpi_task) if t is not None]

    def ready(self) -> tuple[bool, str]:
        """The case store is open (between entering and leaving the rule)."""
        return (True, "open") if self._store is not None else (False, "state store not open")

    @property
    def kpi_timezone(self) -> str:
        """The time zone of KPI months (``calendar.timezone``)."""
        return self.kpis.tz

    def open_cases(self) -> list[dict[str, Any]]:
        """Every open case with its running steps, deadlines and lights, as of now."""
        return list(open_case_views(self.states.values(), self.rp, self.clock.now()))

    async def kpis_for(self, periods: Sequence[tuple[float, float]]) -> list[list[Kpi]]:
        """The KPIs of each (start, end) period, computed from the store."""

        def read(store: CaseStore) -> list[list[KpiRow]]:
            return [kpi_rows(store.db, s, e) for s, e in periods]

        found = await self.query(read)
        return await asyncio.to_thread(
            lambda: [compute(rows, s, e) for rows, (s, e) in zip(found, periods, strict=True)]
        )

    def _require_store(self) -> CaseStore:
        assert self._store is not None, "use CaseRule as an async context manager"
        return self._store

    def _count_lit(self, light: str) -> int:
        # One pass serves both lights of a scrape, and scrapes within a second share it:
        # with 100,000 open cases a pass takes tens of milliseconds of the event loop.
        now = time.monotonic()
        if now - self._lit_at > 1.0:
            counts: dict[str, int] = {}
            for s in self.states.values():
                for v in s.lights.values():
                    counts[v] = counts.get(v, 0) + 1
            self._lit, self._lit_at = counts, now
        return self._lit.get(light, 0)

    # -- the sink ---------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> None:
        """Apply the case events among ``records``; return once they are saved."""
        events = [r for r in records if type(r) is CaseEvent]
        if not events:
            return
        async with self._lock:
            store = self._require_store()
            # difference() probes the dict; ``- keys()`` would walk every open case per write.
            unknown = {(e.city, e.case) for e in events}.difference(self.states)
            known: dict[Key, CaseState | None] = {}
            if unknown:
                known = await self._run_io(lambda: {k: store.get(*k) for k in unknown})
            now = self.clock.now()
            changed: dict[Key, CaseState] = {}
            alerts: list[AlertEvent] = []
            refused: list[CaseEvent] = []
            for ev in events:
                key = (ev.city, ev.case)
                state = changed.get(key) or self.states.get(key) or known.get(key)
                out = apply(state, ev, now, self.rp)
                if out.refused is not None:
                    self.metrics.events.labels("refused").inc()
                    refused.append(ev)
                    changed[key] = out.state  # the event is kept back in ``pending``
                    log.info("case %s: %s refused: %s", ev.case, ev.event, out.refused)
                    await self.rejects.reject(
                        _rejected(
                            ev,
                            self.topic_root,
                            f"{ev.event}: {out.refused} (kept back: applied if the events "
                            "it needs arrive late)",
                        ),
                        _payload(ev),
                    )
                    continue
                if out.duplicate:
                    self.metrics.events.labels("duplicate").inc()
                    continue
                self.metrics.events.labels("applied").inc()
                changed[key] = out.state
                alerts.extend(out.events)
            await self._commit(changed, alerts)

    async def _commit(self, changed: dict[Key, CaseState], alerts: list[AlertEvent]) -> None:
        rows = []
        for state in changed.values():
            nxt = next_instant(state, self.rp) if state.open else None
            rows.append((state, nxt, Dues(*overdue_instants(state, self.rp))))
        # Alerting first: a crash before the save repeats an event (alerting drops
        # repeats by fingerprint) rather than losing it.
        if alerts:
            await self.alerts.emit(alerts)
        if rows:
            await self._run_io(self._require_store().save, rows)
        # Only once saved: if the save failed, the batch is retried against the old states.
        for (key, state), (_, nxt, _) in zip(changed.items(), rows, strict=True):
            if state.open:
                self.states[key] = state
            else:
                self.states.pop(key, None)
            self.timers.set(key, nxt)

    async def _on_due(self, due: list[tuple[Any, float]], now: float) -> None:
        async with self._lock:
            now = self.clock.now()
            changed: dict[Key, CaseState] = {}
            alerts: list[AlertEvent] = []
            for key, at in due:
                state = self.states.get(key)
                if state is None:
                    continue
                self.metrics.lateness.observe(max(0.0, now - at))
                events = tick(state, now, self.rp)
                alerts.extend(events)
                changed[key] = state
            await self._commit(changed, alerts)


def _fingerprint(cfg: CasesConfig, calendar: CalendarConfig) -> str:
    """Identifies the settings the stored clocks were computed with, holiday table included."""
    h = hashlib.sha256(repr((cfg.warn_at, cfg.calendar, cfg.limits, calendar)).encode())
    table = holiday_table_bytes(calendar.holidays)
    if table is not None:
        h.update(table)
    return h.hexdigest()


def _rejected(ev: CaseEvent, topic_root: str, detail: str) -> Rejected:
    topic = case_events_topic(topic_root, ev.city, ev.case)
    return Rejected("case", "impossible_transition", detail, topic, ev.received_at, ev.city)


def _payload(ev: CaseEvent) -> bytes:
    doc = {k: v for k, v in ev._asdict().items() if v is not None and k != "received_at"}
    return orjson.dumps(doc)
