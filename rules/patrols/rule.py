"""The patrol rule: the stateful wrapper around the pure rules of :mod:`rules.patrols`.

A sink for records: shifts, fixes, heartbeats, statuses and case events update
the officers' slots in the :class:`~rules.patrols.fleet.Fleet`; the officers a
batch touched are evaluated at once, vectorised. A ticker evaluates the rules
that come true by time alone (GPS lost, offline) over every slot, waking at the
earliest instant one of them could start. Alert flags are saved as soon as they
change; tracks and coverage every few seconds (a crash loses at most those
seconds of track, never a flag). Saving copies the slots' rows on the event
loop and writes them in the store's own thread.

The rule is read in three parts: this module (its lifecycle, the sink and the
ticker), :mod:`rules.patrols.officers` (who holds which slot) and
:mod:`rules.patrols.persist` (saving, restoring and coverage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from citywatch.aio import cancel_and_wait, close_store
from citywatch.clock import Clock
from citywatch.models import (
    AlertEvent,
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    Record,
    ShiftEvent,
)
from citywatch.rules.contract import RuleContext
from citywatch.rules.events import AlertSink
from citywatch.rules.patrols import state as st
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.evaluate import TIMED, evaluate, next_instants
from citywatch.rules.patrols.fleet import Fleet
from citywatch.rules.patrols.geometry import AssignmentTable
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.patrols.metrics import PatrolMetrics
from citywatch.rules.patrols.officers import Key
from citywatch.rules.patrols.persist import Persistence
from citywatch.rules.patrols.specs import PATROL_RULES, STATE_NAMES, patrol_state
from citywatch.rules.patrols.store import PatrolStore
from citywatch.rules.patrols.view import officer_views
from citywatch.sink import Sink

__all__ = ["PatrolRule", "patrol_state"]
log = logging.getLogger(__name__)
_MAX_SLEEP = 1.0  # wake at least this often, so that a step of the wall clock is noticed
_TICK_BATCH = 2000  # timed evaluations per turn, so that writes interleave
_RETRY = 5.0


class PatrolRule(Persistence):
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
        self.fleet = Fleet(len(PATROL_RULES))
        self.table = AssignmentTable(grids) if grids is not None else None
        self.officers: dict[Key, st.Officer] = {}
        self.by_slot: list[st.Officer | None] = []
        """The officer in each slot of the fleet."""
        self.devices: dict[tuple[str, str], st.Officer] = {}
        self._grid_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._shared: dict[str, str] = {}
        self._docs: set[Key] = set()
        self._cleared: set[Key] = set()
        self._deleted: set[Key] = set()
        self._layout: Any = None
        self._drop_v1 = False
        self._counts: dict[str, int] = {}
        self._counted_at = -1e9
        self._next_due = math.inf
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="patrol-store")
        self._store: PatrolStore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        for name in STATE_NAMES:
            metrics.officers.labels(name).set_function(self._counter(name))

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> PatrolRule:
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            self._store = await loop.run_in_executor(self._io, PatrolStore, self.store_path)
            store = self._store
            rows, layout = await loop.run_in_executor(
                self._io, lambda: (store.load(), store.layout())
            )
            v1 = await loop.run_in_executor(self._io, lambda: list(store.load_v1()))
            self._restore(rows, layout, v1)
        except BaseException:
            # Not entered, so never exited: close the store here (it may be moved aside next).
            opened, self._store = self._store, None
            await close_store(self._io, opened, wait=False)
            raise
        log.info(
            "restored %d officers (%d on shift) in %.2fs",
            len(self.officers),
            len(self.fleet),
            time.perf_counter() - t0,
        )
        self._tasks = [
            asyncio.create_task(self._ticker(), name="patrol-ticker"),
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
            await self._write_coverage(self._on_shift_slots())
        self.fleet.dirty[self.fleet.live()] = True
        await self._save_dirty()
        await close_store(self._io, self._store, wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def ready(self) -> tuple[bool, str]:
        """The patrol store is open (between entering and leaving the rule)."""
        return (True, "open") if self._store is not None else (False, "state store not open")

    def reload(self, ctx: RuleContext) -> None:
        """The thresholds (``patrols:``) and grid cells of a reloaded configuration."""
        self.reconfigure(ctx.patrols, ctx.grids)

    def reconfigure(self, cfg: PatrolsConfig, grids: Grids | None) -> None:
        """New thresholds or grids, in force from now on; the state is kept."""
        if grids is not self.grids:
            self.table = AssignmentTable(grids) if grids is not None else None
        self.cfg, self.grids = cfg, grids
        for o in self.officers.values():
            self._adopt(o)
        self._wake.set()

    def officer_views(self) -> list[dict[str, Any]]:
        """Each officer on shift: who, where, patrol state and coverage so far (for the API)."""
        return list(officer_views(self.fleet, self.officers.values()))

    # -- the sink ---------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> None:
        """Apply the observations among ``records``; evaluate the officers they touched."""
        done = None
        async with self._lock:
            touched = self._observe(records)
            if touched:
                done = await self._evaluate(touched)
        if done is not None:
            await done

    def _observe(self, records: Sequence[Record]) -> dict[int, float]:
        f, devices = self.fleet, self.devices
        touched: dict[int, float] = {}
        fs: list[int] = []
        ft: list[float] = []
        flon: list[float] = []
        flat: list[float] = []
        frec: list[float] = []
        facc: list[float] = []
        nan = math.nan
        for r in records:
            if isinstance(r, Fix | Heartbeat | DeviceStatus):
                o = devices.get((r.city, r.device))
                if o is None or o.slot < 0 or o.device != r.device:
                    continue
                s = o.slot
                if isinstance(r, Fix):
                    fs.append(s)
                    ft.append(r.ts)
                    flon.append(r.lon)
                    flat.append(r.lat)
                    frec.append(r.received_at)
                    facc.append(nan if r.acc is None else r.acc)
                elif isinstance(r, Heartbeat):
                    st.on_heartbeat(f, s, r)
                else:
                    st.on_status(f, s, r)
                if touched.get(s, -math.inf) < r.received_at:
                    touched[s] = r.received_at
            elif isinstance(r, ShiftEvent):
                # Fixes before a shift event are applied first: a start empties the track.
                self._apply_fixes(fs, ft, flon, flat, frec, facc)
                fs, ft, flon, flat, frec, facc = [], [], [], [], [], []
                slot = self._on_shift(r)
                if slot >= 0:
                    touched[slot] = max(touched.get(slot, -math.inf), r.received_at)
            elif isinstance(r, CaseEvent) and r.officer:
                o = self.officers.get((r.city, r.officer))
                if o is not None and st.on_case(o, r):
                    st.link_sites(f, o)
                    self._docs.add((o.city, o.officer))
                    if o.slot >= 0:
                        touched[o.slot] = max(touched.get(o.slot, -math.inf), r.received_at)
                    elif not o.sites:
                        self._forget(o)
        self._apply_fixes(fs, ft, flon, flat, frec, facc)
        return touched

    def _apply_fixes(
        self,
        fs: list[int],
        ft: list[float],
        flon: list[float],
        flat: list[float],
        frec: list[float],
        facc: list[float],
    ) -> None:
        if not fs:
            return
        arr = np.array
        st.apply_fixes(
            self.fleet,
            self.table,
            arr(fs, dtype=np.intp),
            arr(ft, dtype=np.float64),
            arr(flon, dtype=np.float64),
            arr(flat, dtype=np.float64),
            arr(frec, dtype=np.float64),
            arr(facc, dtype=np.float64),
        )

    def _on_shift(self, ev: ShiftEvent) -> int:
        key = (ev.city, ev.officer)
        o = self.officers.get(key)
        f = self.fleet
        if ev.action == "start":
            if o is None:
                o = st.Officer(ev.city, ev.officer)
            if o.device and o.device != ev.device:
                self.devices.pop((o.city, o.device), None)
            o.device, o.grids, o.lead, o.role = ev.device, ev.grids, ev.lead, ev.role
            if o.slot < 0:
                o.slot = f.alloc()
            self._add(o)
            self._adopt(o)
            self._docs.add(key)
            self._deleted.discard(key)
            self._cleared.discard(key)
            if self.grids is not None:
                unknown = self.grids.unknown(o.grids)
                if unknown:
                    log.warning("officer %s: grid cells not in grids_file: %s", o.officer, unknown)
        elif o is None or o.slot < 0:
            return -1
        st.on_shift(f, o.slot, ev)
        return o.slot

    async def _evaluate(self, touched: dict[int, float]) -> asyncio.Future[None] | None:
        """Evaluate the touched slots; the save of changed flags, submitted, to wait for."""
        idx = np.fromiter(touched, dtype=np.intp, count=len(touched))
        now = self.clock.now()
        fired = evaluate(self.fleet, self.by_slot, idx, now)
        self.fleet.dirty[idx] = True
        nxt = np.nanmin(next_instants(self.fleet, idx), initial=math.inf)
        if nxt < self._next_due:
            self._next_due = nxt
            self._wake.set()
        ended = idx[~self.fleet.on_shift[idx]]
        if len(ended):
            await self._write_coverage(ended)
            for s in ended.tolist():
                self._retire(s)
        if not fired:
            return None
        emitted = self.clock.now()
        events: list[AlertEvent] = []
        flagged: set[int] = set()
        for slot, e in fired:
            events.append(e)
            flagged.add(slot)
            if e.status == "firing":
                self.metrics.delay.observe(max(0.0, emitted - touched.get(slot, emitted)))
        await self.alerts.emit(events)
        # Flags are saved at once: a restart must not raise them again.
        return self._submit_save(flagged)

    # -- time-driven rules --------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            done = None
            more = False
            try:
                async with self._lock:
                    done, more = await self._tick(self.clock.now())
                if done is not None:
                    await done
            except Exception:
                # One failure (the alert sink, the store) must not stop the timed rules.
                log.exception("patrol ticker failed; retrying in %.0fs", _RETRY)
                await asyncio.sleep(_RETRY)
                continue
            if more:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            timeout = min(self._next_due - self.clock.now(), _MAX_SLEEP)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    async def _tick(self, now: float) -> tuple[asyncio.Future[None] | None, bool]:
        """Evaluate GPS lost and offline where their instant has come; plan the next wake."""
        f = self.fleet
        idx = f.live()
        inst = next_instants(f, idx)
        due = idx[inst <= now]
        later = inst[inst > now]
        self._next_due = float(later.min()) if len(later) else math.inf
        more = len(due) > _TICK_BATCH
        due = due[:_TICK_BATCH]
        if not len(due):
            return None, False
        fired = evaluate(f, self.by_slot, due, now, TIMED)
        if more:
            self._next_due = now
        if not fired:
            return None, more
        await self.alerts.emit([e for _, e in fired])
        return self._submit_save({s for s, _ in fired}), more

    def full_pass(self, now: float) -> list[AlertEvent]:
        """Every rule over every officer on shift (what the ticker does for the timed rules)."""
        f = self.fleet
        return [e for _, e in evaluate(f, self.by_slot, f.live(), now)]
