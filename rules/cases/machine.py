"""The case state machine, replayed from the case's own event history.

Events can arrive late, twice or out of order (a handheld that was offline), so
the state of a case is never updated in place: the event joins the history,
ordered by ``ts``, and the whole history is replayed. An exact duplicate is
ignored; an event that cannot follow the ones before it is refused, and the
case keeps its previous state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from citywatch.models import CaseEvent
from citywatch.rules.cases.clock import Calendar, Clock
from citywatch.rules.cases.config import CasesConfig

# Rank along the main path; ``returned`` sends a case back to disposal.
_RANK = {
    "reported": 0,
    "filed": 1,
    "dispatched": 2,
    "accepted": 3,
    "returned": 3,
    "resolved": 4,
    "verified": 5,
    "closed": 6,
    "evaluated": 7,
}
FINAL = frozenset({"evaluated", "cancelled"})
OPEN_CLOCKS_AFTER = {
    "reported": ("filing",),
    "filed": ("dispatch",),
    "dispatched": ("acceptance", "disposal"),
    "accepted": ("disposal",),
    "returned": ("disposal",),
    "resolved": ("verification",),
    "verified": ("closing",),
}

Entry = tuple[float, str, float | None]
"""One history entry: (ts, event, extend seconds)."""


class Impossible(Exception):
    """The event cannot follow the case's history (e.g. ``filed`` after ``closed``)."""


@dataclass
class CaseInfo:
    """What the case system said about a case: the latest non-empty value of each field."""

    category: str | None = None
    urgent: bool = False
    grid: str | None = None
    unit: str | None = None
    lat: float | None = None
    lon: float | None = None
    officer: str | None = None

    def update(self, ev: CaseEvent, *, only_missing: bool = False) -> None:
        """Take the event's fields; ``only_missing`` for an event older than the latest one."""
        for name in ("category", "grid", "unit", "lat", "lon", "officer"):
            value = getattr(ev, name)
            if value is not None and not (only_missing and getattr(self, name) is not None):
                setattr(self, name, value)
        if ev.urgent:
            self.urgent = True


@dataclass
class Derived:
    """The state a history leads to."""

    status: str | None = None
    clocks: dict[str, Clock] = field(default_factory=dict)
    suspended: bool = False
    reworks: int = 0
    extensions: int = 0
    filed_at: float | None = None
    dispatched_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    cancelled_at: float | None = None
    disposal_used: float = 0.0
    late_clocks: int = 0
    disposal_late: bool = False
    """Some disposal round (a returned case has several) ran over its limit."""
    disposal_overdue_at: float | None = None
    """When an earlier disposal round went overdue (the current round's clock says its own)."""

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def open(self) -> bool:
        return self.status not in FINAL and self.status != "closed"


class Replayer:
    """Replays a history with the configured limits and calendars."""

    def __init__(self, cfg: CasesConfig, calendars: Mapping[str, Calendar]) -> None:
        self.cfg = cfg
        self.calendars = calendars

    def cal(self, stage: str) -> Calendar:
        return self.calendars[stage]

    def replay(self, history: list[Entry], info: CaseInfo) -> Derived:
        """The state after ``history`` (sorted); raises :class:`Impossible` at the first misfit."""
        d = Derived()
        for ts, event, extend in history:
            self._apply(d, ts, event, extend, info)
        return d

    def _start(self, d: Derived, stage: str, ts: float, info: CaseInfo) -> None:
        limit = self.cfg.limits.stage(stage).limit_for(info.category, info.urgent)
        d.clocks[stage] = Clock(stage, ts, limit, None if d.suspended else ts)

    def _stop(self, d: Derived, stage: str, ts: float) -> None:
        c = d.clocks.get(stage)
        if c is not None and c.active:
            c.stop(self.cal(stage), ts)
            if not c.on_time:
                d.late_clocks += 1
            if stage == "disposal":
                d.disposal_used += c.used
                if not c.on_time:
                    d.disposal_late = True
                    if c.overdue_at is not None and d.disposal_overdue_at is None:
                        d.disposal_overdue_at = c.overdue_at

    def _stop_all(self, d: Derived, ts: float, keep: tuple[str, ...] = ()) -> None:
        for stage in list(d.clocks):
            if stage not in keep:
                self._stop(d, stage, ts)

    def _apply(
        self, d: Derived, ts: float, event: str, extend: float | None, info: CaseInfo
    ) -> None:
        handler = _HANDLERS.get(event)
        if handler is not None:
            handler(self, d, ts, extend, info)
            return
        rank = _RANK[event]
        if d.final or (d.status is not None and rank <= _RANK[d.status] and event != "returned"):
            raise Impossible(f"{event} cannot follow {d.status}")
        if event == "returned" and d.status not in ("resolved", "verified"):
            raise Impossible(f"returned needs a resolved case, the case is {d.status or 'new'}")
        if event == "reported" and d.status is not None:
            raise Impossible("reported twice")
        if d.suspended:
            # A step completed while suspended: the suspension ended then.
            self._resume(d, ts)
        keep = ("disposal",) if event == "accepted" else ()
        self._stop_all(d, ts, keep)
        if event == "returned":
            d.reworks += 1
            d.resolved_at = None  # back in disposal until resolved again
        d.status = event
        if event == "filed":
            d.filed_at = ts
        elif event == "dispatched":
            d.dispatched_at = ts
            d.filed_at = d.filed_at or ts
        elif event == "resolved":
            d.resolved_at = ts
        elif event == "closed":
            d.closed_at = ts
        for stage in OPEN_CLOCKS_AFTER.get(event, ()):
            running = d.clocks.get(stage)
            if event == "accepted" and running is not None and running.active:
                continue  # disposal runs on from dispatch
            self._start(d, stage, ts, info)

    def _resume(self, d: Derived, ts: float) -> None:
        d.suspended = False
        for c in d.clocks.values():
            c.resume(ts)

    def _suspended(self, d: Derived, ts: float, extend: float | None, info: CaseInfo) -> None:
        if d.status is None or not d.open or d.suspended:
            raise Impossible(f"suspended cannot follow {'suspended' if d.suspended else d.status}")
        d.suspended = True
        for c in d.clocks.values():
            if c.running:
                c.pause(self.cal(c.stage), ts)

    def _resumed(self, d: Derived, ts: float, extend: float | None, info: CaseInfo) -> None:
        if not d.suspended:
            raise Impossible("resumed without a suspension")
        self._resume(d, ts)

    def _extended(self, d: Derived, ts: float, extend: float | None, info: CaseInfo) -> None:
        active = [c for c in d.clocks.values() if c.active]
        if not d.open or not active or extend is None:
            raise Impossible(f"extended needs a running step, the case is {d.status or 'new'}")
        # An extension (延期) is granted for disposal; other steps only when disposal is done.
        targets = [c for c in active if c.stage == "disposal"] or active
        for c in targets:
            c.limit += extend
        d.extensions += 1

    def _cancelled(self, d: Derived, ts: float, extend: float | None, info: CaseInfo) -> None:
        if d.final or d.status == "closed":
            raise Impossible(f"cancelled cannot follow {d.status}")
        d.suspended = False
        self._stop_all(d, ts)
        d.status = "cancelled"
        d.cancelled_at = ts


_HANDLERS: dict[str, Callable[[Replayer, Derived, float, float | None, CaseInfo], None]] = {
    "suspended": Replayer._suspended,
    "resumed": Replayer._resumed,
    "extended": Replayer._extended,
    "cancelled": Replayer._cancelled,
}
