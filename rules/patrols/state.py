"""One officer's patrol state, and how each observation changes it.

Movement is judged on the fixes' own times (a buffered upload of old fixes
takes its place in the track); liveness on receive times (a heartbeat is not a
fix, and a live connection is not a fresh position).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from citywatch.models import CaseEvent, DeviceStatus, Fix, Heartbeat, ShiftEvent
from rules.patrols.config import Thresholds

Point = tuple[float, float, float]
"""(fix time, lon, lat)."""

_SITE_OPEN = frozenset({"dispatched", "accepted", "returned"})
_SITE_DONE = frozenset({"resolved", "verified", "closed", "evaluated", "cancelled"})


@dataclass(slots=True)
class Patrol:
    """What is known about one officer on (or off) shift."""

    city: str
    officer: str
    device: str | None = None
    grids: tuple[str, ...] = ()
    lead: str | None = None
    role: str | None = None
    on_shift: bool = False
    on_break: bool = False
    watched_since: float | None = None
    track: list[Point] = field(default_factory=list)
    last_seen: float | None = None
    last_good_fix: float | None = None
    offline: bool = False
    outside: bool = False
    out_since: float | None = None
    newest_fix: float | None = None
    position: Point | None = None
    sites: dict[str, tuple[float, float]] = field(default_factory=dict)
    firing: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """The rules apply only while the officer is on shift and not on a break."""
        return self.on_shift and not self.on_break


def on_shift(p: Patrol, ev: ShiftEvent) -> None:
    """A shift or break starts or ends; the watch starts afresh when patrolling resumes."""
    if ev.action == "start":
        p.on_shift, p.on_break = True, False
        p.device, p.grids, p.lead, p.role = ev.device, ev.grids, ev.lead, ev.role
    elif ev.action == "end":
        p.on_shift = False
    elif ev.action == "break_start":
        p.on_break = True
    elif ev.action == "break_end":
        p.on_break = False
    if ev.action in ("start", "break_end"):
        p.watched_since = ev.received_at
        p.track.clear()
        p.outside, p.out_since, p.newest_fix = False, None, None
        p.last_good_fix = p.last_seen = None


def on_fix(p: Patrol, fix: Fix, th: Thresholds, signed_distance: float | None) -> None:
    """Add a fix: to the track if accurate enough, to the in/out state if it is the newest.

    ``signed_distance`` is metres from the assigned cells (negative inside), or None
    when the officer has no known cells.
    """
    p.last_seen = max(p.last_seen or fix.received_at, fix.received_at)
    good = fix.acc is None or fix.acc <= th.idle.max_acc
    if not good:
        return
    p.last_good_fix = max(p.last_good_fix or fix.received_at, fix.received_at)
    point = (fix.ts, fix.lon, fix.lat)
    i = bisect.bisect(p.track, point)
    # One point per 1/24 of the window is plenty to tell standing from walking, and keeps
    # the track (memory and the idle check) small: a close neighbour is replaced.
    step = th.idle.window / 24
    if 1 < i == len(p.track) and point[0] - p.track[i - 1][0] < step:
        p.track[i - 1] = point
    else:
        p.track.insert(i, point)
    newest = p.track[-1][0]
    # Keep the window plus the last point before it, which says where the window began.
    cut = bisect.bisect_left(p.track, (newest - th.idle.window,)) - 1
    if cut > 0:
        del p.track[:cut]
    if p.newest_fix is not None and fix.ts <= p.newest_fix:
        return  # an old fix from a buffer: placed in the track, not a change of state
    p.newest_fix = fix.ts
    p.position = point
    if signed_distance is None:
        return
    buffer = th.out_of_grid.buffer
    if not p.outside and signed_distance > buffer:
        p.outside, p.out_since = True, fix.ts
    elif p.outside and signed_distance < -buffer:
        p.outside, p.out_since = False, None


def on_heartbeat(p: Patrol, hb: Heartbeat) -> None:
    p.last_seen = max(p.last_seen or hb.received_at, hb.received_at)
    p.offline = False


def on_status(p: Patrol, st: DeviceStatus) -> None:
    p.offline = not st.online
    if st.online:
        p.last_seen = max(p.last_seen or st.received_at, st.received_at)


def on_case(p: Patrol, ev: CaseEvent) -> None:
    """Track the sites of the open cases this officer handles (standing there is work)."""
    if ev.event in _SITE_DONE:
        p.sites.pop(ev.case, None)
    elif ev.event in _SITE_OPEN and ev.lat is not None and ev.lon is not None:
        p.sites[ev.case] = (ev.lon, ev.lat)
