"""Officers, and how each observation changes their patrol state.

Who an officer is (ids, cells, lead, role, case sites) is a small Python object;
what is measured about them is a slot of the :class:`~rules.patrols.fleet.Fleet`.
Movement is judged on the fixes' own times (a buffered upload of old fixes
takes its place in the track); liveness on receive times (a heartbeat is not a
fix, and a live connection is not a fresh position).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from citywatch.models import CaseEvent, DeviceStatus, Heartbeat, ShiftEvent
from citywatch.rules.patrols import coverage
from citywatch.rules.patrols.config import Thresholds
from citywatch.rules.patrols.fleet import Fleet, Floats, Idx
from citywatch.rules.patrols.geometry import AssignmentTable
from citywatch.rules.patrols.specs import PATROL_RULES
from citywatch.rules.patrols.track import add_points

# (section, ((key, column), ...)) per patrol rule, from the specs.
_THRESHOLD_COLUMNS = tuple((s.threshold, tuple(s.columns.items())) for s in PATROL_RULES)
_SITE_OPEN = frozenset({"dispatched", "accepted", "returned"})
_SITE_DONE = frozenset({"resolved", "verified", "closed", "evaluated", "cancelled"})


class Officer:
    """Who an officer is; ``slot`` is their row in the fleet while on shift (else -1)."""

    __slots__ = ("city", "device", "grids", "lead", "officer", "role", "sites", "slot")

    def __init__(
        self,
        city: str,
        officer: str,
        device: str | None = None,
        grids: tuple[str, ...] = (),
        lead: str | None = None,
        role: str | None = None,
        sites: dict[str, tuple[float, float]] | None = None,
        slot: int = -1,
    ) -> None:
        self.city, self.officer, self.device = city, officer, device
        self.grids, self.lead, self.role = grids, lead, role
        self.sites = sites
        """Sites (lon, lat) of the open cases the officer handles, by case id; None if none."""
        self.slot = slot

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able form, for the store."""
        return {
            "city": self.city,
            "officer": self.officer,
            "device": self.device,
            "grids": list(self.grids),
            "lead": self.lead,
            "role": self.role,
            "sites": self.sites,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Officer:
        sites = doc.get("sites") or None
        return cls(
            doc["city"],
            doc["officer"],
            doc.get("device"),
            tuple(doc.get("grids") or ()),
            doc.get("lead"),
            doc.get("role"),
            {k: (float(v[0]), float(v[1])) for k, v in sites.items()} if sites else None,
        )


def set_thresholds(f: Fleet, slot: int, th: Thresholds) -> None:
    """Copy an officer's thresholds into their slot: each rule's section, as its spec maps it."""
    cols = f.cols
    for section, pairs in _THRESHOLD_COLUMNS:
        values = getattr(th, section)
        for key, column in pairs:
            cols[column][slot] = getattr(values, key)
    f.idle_stale[slot] = True  # the kept idle result was judged with the old thresholds


def on_shift(f: Fleet, slot: int, ev: ShiftEvent) -> None:
    """A shift or break starts or ends; the watch starts afresh when patrolling resumes."""
    if ev.action == "start":
        f.on_shift[slot], f.on_break[slot] = True, False
        coverage.reset(f, slot)
    elif ev.action == "end":
        f.on_shift[slot] = False
    elif ev.action == "break_start":
        f.on_break[slot] = True
    elif ev.action == "break_end":
        f.on_break[slot] = False
    if ev.action in ("start", "break_end"):
        f.watched_since[slot] = ev.received_at
        f.reset_track(slot)
        f.outside[slot], f.out_since[slot], f.newest_fix[slot] = False, math.nan, math.nan
        f.last_good_fix[slot] = f.last_seen[slot] = math.nan


def apply_fixes(
    f: Fleet,
    table: AssignmentTable | None,
    slots: Idx,
    ts: Floats,
    lon: Floats,
    lat: Floats,
    received: Floats,
    acc: Floats,
) -> None:
    """Add a batch of fixes (``acc`` NaN when not given); a slot may have several, in order.

    Every fix is a sign of life; an accurate one (within ``idle.max_acc``) goes into the
    track, and, if it is the newest, decides whether the officer is in their cells.
    """
    np.fmax.at(f.last_seen, slots, received)
    good = np.flatnonzero(~(acc > f.max_acc[slots]))
    if not len(good):
        return
    slots, ts, lon, lat = slots[good], ts[good], lon[good], lat[good]
    np.fmax.at(f.last_good_fix, slots, received[good])
    # Fixes of one slot are applied in turn: round r takes each slot's r-th fix.
    order = np.argsort(slots, kind="stable")
    s_sorted = slots[order]
    first = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    for r in range(int(rank.max()) + 1):
        sel = order[rank == r]
        _apply_round(f, table, slots[sel], ts[sel], lon[sel], lat[sel])


def _apply_round(
    f: Fleet, table: AssignmentTable | None, s: Idx, t: Floats, lon: Floats, lat: Floats
) -> None:
    newest = f.newest_fix[s]
    newer = np.isnan(newest) | (t > newest)
    add_points(f, s, t, lon, lat)
    n = s[newer]
    f.newest_fix[n] = t[newer]
    f.pos_ts[n], f.pos_lon[n], f.pos_lat[n] = t[newer], lon[newer], lat[newer]
    if table is None:
        return
    ids = f.assign[s]
    active = f.active(s)
    # An old fix from a buffer is placed in the track; it does not change the in/out state.
    need = (ids >= 0) & (newer | active)
    if not need.any():
        return
    k = np.flatnonzero(need)
    dist, cell = table.locate(ids[k].astype(np.intp), lon[k], lat[k])
    ks, kn, kt = s[k], newer[k], t[k]
    out, buf = f.outside[ks], f.buffer[ks]
    go_out = kn & ~out & (dist > buf)
    go_in = kn & out & (dist < -buf)
    f.outside[ks[go_out]], f.out_since[ks[go_out]] = True, kt[go_out]
    f.outside[ks[go_in]], f.out_since[ks[go_in]] = False, math.nan
    a = active[k]
    coverage.add(f, ks[a], kt[a], lon[k][a], lat[k][a], cell[a])


def on_heartbeat(f: Fleet, slot: int, hb: Heartbeat) -> None:
    """A sign of life (not a position)."""
    f.last_seen[slot] = np.fmax(f.last_seen[slot], hb.received_at)
    f.offline[slot] = False


def on_status(f: Fleet, slot: int, st: DeviceStatus) -> None:
    """The handheld's retained connection status."""
    f.offline[slot] = not st.online
    if st.online:
        f.last_seen[slot] = np.fmax(f.last_seen[slot], st.received_at)


def on_case(o: Officer, ev: CaseEvent) -> bool:
    """Track the sites of the open cases this officer handles (standing there is work).

    True if the sites changed.
    """
    if ev.event in _SITE_DONE and o.sites and ev.case in o.sites:
        del o.sites[ev.case]
        if not o.sites:
            o.sites = None
        return True
    if ev.event in _SITE_OPEN and ev.lat is not None and ev.lon is not None:
        if o.sites is None:
            o.sites = {}
        o.sites[ev.case] = (ev.lon, ev.lat)
        return True
    return False


def link_sites(f: Fleet, o: Officer) -> None:
    """Let the fleet see the officer's case sites (for the idle rule)."""
    if o.slot < 0:
        return
    f.idle_stale[o.slot] = True
    f.has_sites[o.slot] = bool(o.sites)
    if o.sites:
        f.sites[o.slot] = o.sites
    else:
        f.sites.pop(o.slot, None)
