"""Saving and restoring the patrol rule's state, and writing coverage.

What is saved: each officer's doc (who they are, rewritten only when it
changes) and their slot's row, copied on the event loop and written in the
store's own thread (:class:`~rules.patrols.store.PatrolStore`), in the order of
the copies. At start the rows are read back into slots (rows of another layout
start the watch afresh; a version 1 store is read through
:mod:`rules.patrols.legacy`). Coverage of the officers on shift goes to the
gauges per city and, per officer, to InfluxDB (``patrol_coverage``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from citywatch.clock import Clock
from citywatch.models import PatrolCoverage
from citywatch.rules.patrols import coverage, legacy
from citywatch.rules.patrols import state as st
from citywatch.rules.patrols.fleet import Idx
from citywatch.rules.patrols.metrics import PatrolMetrics
from citywatch.rules.patrols.officers import Officers
from citywatch.rules.patrols.store import PatrolStore, SaveJob
from citywatch.sink import Sink
from citywatch.sqlite import DECODE_ERRORS, bad_row

log = logging.getLogger(__name__)
_SAVE_CHUNK = 4096  # rows copied and written at a time


class Persistence(Officers):
    """Saving, restoring and coverage: a part of :class:`~rules.patrols.rule.PatrolRule`.

    The attributes are set by ``PatrolRule.__init__``.
    """

    store_path: Path
    history: Sink | None
    metrics: PatrolMetrics
    clock: Clock
    flush_interval: float
    coverage_interval: float
    _drop_v1: bool
    _lock: asyncio.Lock
    _io: ThreadPoolExecutor
    _store: PatrolStore | None

    def _restore(
        self, rows: list[tuple[str, str, bytes, bytes | None]], layout: Any, v1: list[bytes]
    ) -> None:
        f = self.fleet
        slots, blobs, lost = [], [], []
        size = f.row_size(layout) if layout is not None else -1
        for city, officer, doc, blob in rows:
            try:
                o = st.Officer.from_doc(orjson.loads(doc))
            except DECODE_ERRORS as exc:
                raise bad_row(self.store_path, f"officer {city}/{officer}", exc) from None
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
            try:
                o, cov = legacy.restore_v1(f, blob, self.table)
            except DECODE_ERRORS as exc:
                raise bad_row(self.store_path, "an officer of version 1", exc) from None
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
