"""A case's state and the pure functions over it: apply an event, tick the clock.

``apply(state, event, now)`` and ``tick(state, now)`` return the new state and
the alert events to emit; they never read the wall clock. ``lights`` records
which lights alerting has been told about, so a restart or a repeated tick
never flags a step twice.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field

import orjson

from citywatch.models import AlertEvent, CaseEvent
from citywatch.rules.cases.clock import Clock
from citywatch.rules.cases.machine import CaseInfo, Derived, Entry, Impossible, Replayer

YELLOW, RED = "yellow", "red"
_LEVEL = {None: 0, YELLOW: 1, RED: 2}
RULE_OF = {YELLOW: "case_warning", RED: "case_overdue"}


@dataclass
class CaseState:
    """Everything kept about one case."""

    city: str
    case: str
    history: list[Entry] = field(default_factory=list)
    info: CaseInfo = field(default_factory=CaseInfo)
    derived: Derived = field(default_factory=Derived)
    lights: dict[str, str] = field(default_factory=dict)
    pending: list[Entry] = field(default_factory=list)
    """Refused events kept back: each joins the history once the events it needs arrive."""

    @property
    def open(self) -> bool:
        return self.derived.open

    def to_json(self) -> bytes:
        """The stored form, derived state included so that loading needs no replay.

        orjson serialises the dataclasses itself, much faster than ``asdict``.
        """
        return orjson.dumps(
            {
                "city": self.city,
                "case": self.case,
                "history": self.history,
                "info": self.info,
                "lights": self.lights,
                "derived": self.derived,
                "pending": self.pending,
            }
        )

    @classmethod
    def from_json(cls, blob: bytes) -> CaseState:
        doc = orjson.loads(blob)
        raw = dict(doc["derived"])
        stored = raw.pop("clocks")
        # Stores written by earlier versions hold clocks as a list of field tuples.
        clocks = (
            {c[0]: Clock(*c) for c in stored}
            if isinstance(stored, list)
            else {stage: Clock(**c) for stage, c in stored.items()}
        )
        return cls(
            doc["city"],
            doc["case"],
            [tuple(e) for e in doc["history"]],
            CaseInfo(**doc["info"]),
            Derived(clocks=clocks, **raw),
            dict(doc["lights"]),
            [tuple(e) for e in doc.get("pending", [])],
        )


@dataclass
class Outcome:
    """What applying an event led to."""

    state: CaseState
    events: list[AlertEvent]
    refused: str | None = None
    duplicate: bool = False


# Among events with the same ``ts``, the order the steps take place in.
_SAME_TS_ORDER = {
    "reported": 0,
    "filed": 1,
    "dispatched": 2,
    "accepted": 3,
    "suspended": 4,
    "resumed": 5,
    "extended": 6,
    "resolved": 7,
    "returned": 8,
    "verified": 9,
    "closed": 10,
    "evaluated": 11,
    "cancelled": 12,
}


def _order(e: Entry) -> tuple[float, int]:
    return e[0], _SAME_TS_ORDER.get(e[1], 99)


def apply(state: CaseState | None, ev: CaseEvent, now: float, rp: Replayer) -> Outcome:
    """Add ``ev`` to the case's history, replay it and compare the lights."""
    entry: Entry = (ev.ts, ev.event, ev.extend)
    if state is None:
        state = CaseState(ev.city, ev.case)
    if entry in state.history or entry in state.pending:
        return Outcome(state, [], duplicate=True)
    info = dataclasses.replace(state.info)
    # Fields are the latest by ts: a late, older event only fills what is missing.
    info.update(ev, only_missing=bool(state.history) and ev.ts < state.history[-1][0])
    try:
        history, derived = _insert(state.history, entry, info, rp)
    except Impossible as exc:
        # Kept back, bounded: an event it needs may still arrive (a handheld was offline).
        pending = [*state.pending, entry][-MAX_PENDING:]
        kept = dataclasses.replace(state, pending=pending)
        return Outcome(kept, [], refused=str(exc))
    pending = list(state.pending)
    progress = True
    while progress and pending:
        progress = False
        for held in list(pending):
            try:
                history, derived = _insert(history, held, info, rp)
            except Impossible:
                continue
            pending.remove(held)
            progress = True
    new = CaseState(state.city, state.case, history, info, derived, dict(state.lights), pending)
    return Outcome(new, diff_lights(new, now, rp))


MAX_PENDING = 16


def _insert(
    history: list[Entry], entry: Entry, info: CaseInfo, rp: Replayer
) -> tuple[list[Entry], Derived]:
    out = list(history)
    bisect.insort(out, entry, key=_order)
    return out, rp.replay(out, info)


def tick(state: CaseState, now: float, rp: Replayer) -> list[AlertEvent]:
    """The alert events due by ``now`` (mutates ``state.lights``)."""
    return diff_lights(state, now, rp)


def _light(c: Clock, now: float, rp: Replayer) -> tuple[str | None, float | None, float | None]:
    """(light, warn instant, due instant) of an active clock at ``now``."""
    cal = rp.cal(c.stage)
    warn_amount = rp.cfg.warn_at * c.limit
    if not c.running:  # suspended: the light stays where the used time put it
        light = RED if c.used >= c.limit else YELLOW if c.used >= warn_amount else None
        return light, None, None
    warn = c.instant_of(cal, warn_amount)
    due = c.instant_of(cal, c.limit)
    assert warn is not None and due is not None
    light = RED if now >= due else YELLOW if now >= warn else None
    return light, warn, due


def next_instant(state: CaseState, rp: Replayer) -> float | None:
    """The next instant at which a light of this case changes, if any."""
    best: float | None = None
    for stage, c in state.derived.clocks.items():
        if not c.running:
            continue
        shown = _LEVEL[state.lights.get(stage)]
        cal = rp.cal(stage)
        if shown < 1:
            t = c.instant_of(cal, rp.cfg.warn_at * c.limit)
        elif shown < 2:
            t = c.instant_of(cal, c.limit)
        else:
            continue
        if t is not None and (best is None or t < best):
            best = t
    return best


def overdue_instants(state: CaseState, rp: Replayer) -> tuple[float | None, float | None]:
    """(earliest, disposal) instant at which a step is, was, or will be overdue if it runs on."""
    first: float | None = None
    disposal: float | None = None
    for stage, c in state.derived.clocks.items():
        t = c.overdue_at
        if t is None and c.running:
            t = c.instant_of(rp.cal(stage), c.limit)
        if t is None:
            continue
        if first is None or t < first:
            first = t
        if stage == "disposal":
            disposal = t
    earlier = state.derived.disposal_overdue_at
    if earlier is not None:
        disposal = earlier if disposal is None else min(disposal, earlier)
        first = earlier if first is None else min(first, earlier)
    return first, disposal


def diff_lights(state: CaseState, now: float, rp: Replayer) -> list[AlertEvent]:
    """Events that bring alerting in line with the lights at ``now``; updates ``state.lights``."""
    out: list[AlertEvent] = []
    clocks = state.derived.clocks
    for stage, c in clocks.items():
        if not c.active:
            continue
        light, warn, due = _light(c, now, rp)
        shown = state.lights.get(stage)
        if _LEVEL[light] == _LEVEL[shown]:
            continue
        cal = rp.cal(stage)
        used = c.used_at(cal, now)
        if _LEVEL[light] < _LEVEL[shown]:
            # The light went down: an extension, or a late suspension moved the deadline.
            for level in (RED, YELLOW):
                if _LEVEL[light] < _LEVEL[level] <= _LEVEL[shown]:
                    out.append(_event(state, c, level, "resolved", now, used, due))
        for level, at in ((YELLOW, warn), (RED, due)):
            if _LEVEL[shown] < _LEVEL[level] <= _LEVEL[light]:
                if at is None and level == RED:
                    at = c.overdue_at  # a paused clock: it went overdue before the pause
                out.append(
                    _event(
                        state,
                        c,
                        level,
                        "firing",
                        at if at is not None else now,
                        used,
                        due or c.overdue_at,
                    )
                )
        if light is None:
            state.lights.pop(stage, None)
        else:
            state.lights[stage] = light
    for stage, shown in list(state.lights.items()):
        gone = clocks.get(stage)
        if gone is not None and gone.active:
            continue
        ended = gone.stopped if gone is not None and gone.stopped is not None else now
        used = gone.used if gone is not None else 0.0
        for level in (YELLOW, RED):
            if _LEVEL[level] <= _LEVEL[shown]:
                deadline = gone.overdue_at if gone is not None else None
                out.append(_event(state, gone, level, "resolved", ended, used, deadline, stage))
        del state.lights[stage]
    return out


def _event(
    state: CaseState,
    c: Clock | None,
    level: str,
    status: str,
    at: float,
    used: float,
    deadline: float | None,
    stage: str | None = None,
) -> AlertEvent:
    info = state.info
    step = c.stage if c is not None else stage or ""
    limit = c.limit if c is not None else 0.0
    labels = {"step": step}
    for name in ("category", "grid", "unit"):
        value = getattr(info, name)
        if value:
            labels[name] = value
    values: dict[str, float] = {"elapsed": used, "limit": limit}
    if deadline is not None:
        values["deadline"] = deadline
    if level == RED:
        values["overdue_by"] = max(0.0, used - limit)
    return AlertEvent(
        rule=RULE_OF[level],
        status=status,
        severity=level,
        city=state.city,
        subject_kind="case",
        subject=state.case,
        at=at,
        labels=labels,
        values=values,
    )
