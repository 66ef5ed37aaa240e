"""The patrol rule: the stateful wrapper around the pure rules of :mod:`rules.patrols`.

A sink for records: shifts, fixes, heartbeats, statuses and case events update
the officers' slots in the :class:`~rules.patrols.fleet.Fleet`; the officers a
batch touched are evaluated at once, vectorised. A ticker evaluates the rules
that come true by time alone (GPS lost, offline) over every slot, waking at the
earliest instant one of them could start. Alert flags are saved as soon as they
change; tracks and coverage every few seconds (a crash loses at most those
seconds of track, never a flag). Saving copies the slots' rows on the event
loop and writes them in the store's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson

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
from rules.contract import RuleContext
from rules.events import AlertSink
from rules.patrols import coverage, legacy
from rules.patrols import state as st
from rules.patrols.config import PatrolsConfig
from rules.patrols.evaluate import TIMED, evaluate, next_instants
from rules.patrols.fleet import Fleet, Idx
from rules.patrols.geometry import AssignmentTable
from rules.patrols.grids import Grids
from rules.patrols.metrics import PatrolMetrics
from rules.patrols.specs import (
    BY_PRECEDENCE,
    ON_BREAK,
    PATROL_RULES,
    PATROLLING,
    STATE_NAMES,
    patrol_state,
)
from rules.patrols.store import PatrolStore, SaveJob
from rules.patrols.view import officer_views

log = logging.getLogger(__name__)
Key = tuple[str, str]
_MAX_SLEEP = 1.0  # wake at least this often, so that a step of the wall clock is noticed
_TICK_BATCH = 2000  # timed evaluations per turn, so that writes interleave
_RETRY = 5.0
_SAVE_CHUNK = 4096  # rows copied and written at a time


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
        self.fleet = Fleet()
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

    def _counter(self, name: str) -> Callable[[], float]:
        return lambda: self._state_counts().get(name, 0)

    def _state_counts(self) -> dict[str, int]:
        # One pass serves every label of a scrape.
        now = time.monotonic()
        if now - self._counted_at > 1.0:
            f = self.fleet
            idx = f.live()
            idx = idx[f.on_shift[idx]]
            firing, brk = f.firing[idx], f.on_break[idx]
            left = ~brk
            counts = {ON_BREAK.name: int(brk.sum())}
            for i in BY_PRECEDENCE:
                has = left & ((firing & (1 << i)) != 0)
                counts[PATROL_RULES[i].state.name] = int(has.sum())
                left &= ~has
            counts[PATROLLING.name] = int(left.sum())
            self._counts, self._counted_at = counts, now
        return self._counts

    def officer(self, city: str, officer: str) -> st.Officer | None:
        """What is known about an officer (on shift, or off shift with open case sites)."""
        return self.officers.get((city, officer))

    def state_of(self, city: str, officer: str) -> str | None:
        """The officer's state (see :data:`~rules.patrols.specs.OFFICER_STATES`), or None when
        off shift."""
        o = self.officers.get((city, officer))
        return patrol_state(self.fleet, o.slot) if o is not None else None

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> PatrolRule:
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._store = await loop.run_in_executor(self._io, PatrolStore, self.store_path)
        store = self._store
        rows, layout = await loop.run_in_executor(self._io, lambda: (store.load(), store.layout()))
        v1 = await loop.run_in_executor(self._io, lambda: list(store.load_v1()))
        self._restore(rows, layout, v1)
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

    def _restore(
        self, rows: list[tuple[bytes, bytes | None]], layout: Any, v1: list[bytes]
    ) -> None:
        f = self.fleet
        slots, blobs, lost = [], [], []
        size = f.row_size(layout) if layout is not None else -1
        for doc, blob in rows:
            o = st.Officer.from_doc(orjson.loads(doc))
            if blob is not None:
                o.slot = f.alloc()
                if len(blob) == size:
                    slots.append(o.slot)
                    blobs.append(blob)
                else:
                    lost.append(o.slot)
            self._add(o)
        if slots:
            f.unpack(slots, blobs, layout)
        if lost:
            # Written in another layout by a run that stopped before rewriting them: the
            # officers are still on shift, their watch starts afresh.
            log.warning("patrol state of %d officers unreadable; watching them afresh", len(lost))
            now = self.clock.now()
            for s in lost:
                f.on_shift[s], f.watched_since[s] = True, now
        covs = []
        for blob in v1:
            o, cov = legacy.restore_v1(f, blob, self.table)
            if (o.city, o.officer) in self.officers:
                if o.slot >= 0:
                    f.free(o.slot)
                continue
            self._add(o)
            self._docs.add((o.city, o.officer))
            covs.append((o, cov))
        self._drop_v1 = bool(v1)
        for o in self.officers.values():
            self._adopt(o)
        for o, cov in covs:
            if cov is not None and o.slot >= 0 and self.table is not None:
                legacy.restore_coverage(f, o.slot, cov, self.table)
        current = orjson.loads(orjson.dumps(f.dtype().descr))
        # A new layout, or officers from version 1: every row is written again, with the layout.
        self._layout = current if layout == current and not v1 else None

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
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, self._store.close)
        self._io.shutdown(wait=True)

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
        return list(officer_views(self))

    def _add(self, o: st.Officer) -> None:
        # Many officers share a city, a lead, a role, a set of cells: one object each.
        shared = self._shared
        o.city = shared.setdefault(o.city, o.city)
        o.lead = shared.setdefault(o.lead, o.lead) if o.lead else o.lead
        o.role = shared.setdefault(o.role, o.role) if o.role else o.role
        o.grids = self._grid_sets.setdefault(o.grids, o.grids)
        self.officers[(o.city, o.officer)] = o
        if o.slot >= 0:
            while len(self.by_slot) <= o.slot:
                self.by_slot.extend([None] * max(1024, len(self.by_slot)))
            self.by_slot[o.slot] = o
            if o.device:
                self.devices[(o.city, o.device)] = o

    def _adopt(self, o: st.Officer) -> None:
        """Thresholds, cells and case sites of an officer's slot, from the current config."""
        s = o.slot
        if s < 0:
            return
        f = self.fleet
        st.set_thresholds(f, s, self.cfg.thresholds(o.city, o.grids, o.role))
        f.assign[s] = -1
        if self.table is not None and o.grids and not self.table.grids.unknown(o.grids):
            f.assign[s] = self.table.id_of(o.grids)
            words = (self.table.max_cells + 63) // 64
            if words > f.visited.shape[1]:
                f.widen_visited(words)
                self._layout = None  # every row is written again in the new layout
        st.link_sites(f, o)

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

    def _retire(self, slot: int) -> None:
        """A shift ended: give the slot back; keep the officer only for their open case sites."""
        o = self.by_slot[slot]
        self.by_slot[slot] = None
        self.fleet.free(slot)
        if o is None:
            return
        o.slot = -1
        if o.device:
            self.devices.pop((o.city, o.device), None)
        if o.sites:
            self._cleared.add((o.city, o.officer))
        else:
            self._forget(o)

    def _forget(self, o: st.Officer) -> None:
        key = (o.city, o.officer)
        self.officers.pop(key, None)
        self._docs.discard(key)
        self._cleared.discard(key)
        self._deleted.add(key)

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

    # -- persistence and coverage -----------------------------------------------

    def _submit_save(self, slots: set[int] | Idx) -> asyncio.Future[None]:
        """Copy the rows of ``slots`` (and pending docs and deletions) now; write them in the
        store's thread. Submitted in order, so writes land in the order of their copies."""
        f = self.fleet
        job = SaveJob()
        idx = np.fromiter(slots, dtype=np.intp) if isinstance(slots, set) else slots
        if self._layout is None:
            self._layout = f.dtype().descr
            job.layout = self._layout
            f.dirty[f.live()] = True  # every row again, in this layout: see _save_dirty
        idx = idx[f.used[idx]]
        f.dirty[idx] = False
        job.packed, job.row_size = f.pack(idx)
        by_slot = self.by_slot
        job.keys = [(o.city, o.officer) for o in (by_slot[s] for s in idx.tolist()) if o]
        # The docs of these rows (their rows must exist to take a state), and some more.
        pending = self._docs
        keys = [k for k in job.keys if k in pending]
        keys += itertools.islice(pending, _SAVE_CHUNK)
        pending.difference_update(keys)
        docs = [o for o in map(self.officers.get, dict.fromkeys(keys)) if o is not None]
        job.docs = [(o.city, o.officer, orjson.dumps(o.to_doc())) for o in docs]
        job.cleared, job.deleted = list(self._cleared), list(self._deleted)
        job.drop_v1, self._drop_v1 = self._drop_v1, False
        self._cleared.clear()
        self._deleted.clear()
        if self._store is None or not job:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.wrap_future(self._io.submit(self._store.save, job))

    async def _save_dirty(self) -> None:
        """Save every changed slot, a chunk at a time: the copy of a chunk is taken under the
        lock, written outside it, so that no copy is large and writes go on meanwhile."""
        while True:
            async with self._lock:
                f = self.fleet
                idx = np.flatnonzero(f.dirty)[:_SAVE_CHUNK]
                if not len(idx) and not (self._docs or self._cleared or self._deleted):
                    return
                done = self._submit_save(idx)
            await done

    async def _flusher(self) -> None:
        last_coverage = time.monotonic()
        while True:
            await asyncio.sleep(self.flush_interval)
            await self._save_dirty()
            if time.monotonic() - last_coverage >= self.coverage_interval:
                last_coverage = time.monotonic()
                async with self._lock:
                    await self._write_coverage(self._on_shift_slots())

    def _on_shift_slots(self) -> Idx:
        f = self.fleet
        idx = f.live()
        return np.asarray(idx[f.on_shift[idx]], dtype=np.intp)

    async def _write_coverage(self, idx: Idx) -> None:
        f, table = self.fleet, self.table
        idx = idx[(f.assign[idx] >= 0) & ~np.isnan(f.watched_since[idx])]
        if table is None or not len(idx):
            return
        now = self.clock.now()
        assigned = np.array([len(c) for c in table.cells], dtype=np.int64)[f.assign[idx]]
        visited = coverage.visited_count(f, idx)
        share = visited / np.maximum(assigned, 1)
        distance = f.distance[idx]
        cities = [o.city if o is not None else "" for o in (self.by_slot[s] for s in idx.tolist())]
        names, which = np.unique(np.array(cities, dtype=object), return_inverse=True)
        n = np.bincount(which)
        mean_share = np.bincount(which, weights=share) / n
        mean_distance = np.bincount(which, weights=distance) / n
        for k, city in enumerate(names.tolist()):
            self.metrics.coverage.labels(city).set(float(mean_share[k]))
            self.metrics.distance.labels(city).set(float(mean_distance[k]))
        if self.history is None:
            return
        out = []
        for s, a, v, d in zip(
            idx.tolist(), assigned.tolist(), visited.tolist(), distance.tolist(), strict=True
        ):
            o = self.by_slot[s]
            if o is not None:
                ws = float(f.watched_since[s])
                out.append(PatrolCoverage(o.city, o.officer, ws, a, v, d, now))
        if out:
            await self.history.write(out)
