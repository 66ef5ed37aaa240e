"""The officers the patrol rule knows, and the slots they hold in the fleet.

An officer on shift holds a slot, their row of the
:class:`~rules.patrols.fleet.Fleet`, found by officer and by handheld; off shift,
an officer is kept only for the sites of the open cases they handle. A slot
takes the thresholds, cells and case sites of its officer from the current
configuration. The state shown for an officer, and the count of officers in
each state (the gauge ``citywatch_patrol_officers``), are read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from citywatch.rules.patrols import state as st
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.fleet import Fleet
from citywatch.rules.patrols.geometry import AssignmentTable
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.patrols.specs import (
    BY_PRECEDENCE,
    ON_BREAK,
    PATROL_RULES,
    PATROLLING,
    patrol_state,
)

Key = tuple[str, str]


class Officers:
    """Who holds which slot: a part of :class:`~rules.patrols.rule.PatrolRule`.

    The attributes are set by ``PatrolRule.__init__``.
    """

    cfg: PatrolsConfig
    grids: Grids | None
    table: AssignmentTable | None
    fleet: Fleet
    officers: dict[Key, st.Officer]
    by_slot: list[st.Officer | None]
    devices: dict[tuple[str, str], st.Officer]
    _grid_sets: dict[tuple[str, ...], tuple[str, ...]]
    _shared: dict[str, str]
    _docs: set[Key]
    """Officers whose doc is to be saved."""
    _cleared: set[Key]
    """Officers off shift whose row is to be cleared."""
    _deleted: set[Key]
    """Officers to delete from the store."""
    _layout: Any
    """The row layout saved in the store, or None: every row is to be written again."""
    _counts: dict[str, int]
    _counted_at: float

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
