"""The patrol rules' table, and turning their conditions into alert events.

Each rule is a pure function of (fleet, slots, now) returning, per slot, since
when its condition holds, or NaN. ``evaluate`` compares that with what alerting
was told (the ``firing`` bits) and returns the events that bring it in line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from citywatch.durations import duration_zh
from citywatch.models import AlertEvent
from rules.patrols.fleet import RULE_NAMES, Fleet, Floats, Idx
from rules.patrols.idle import idle_since
from rules.patrols.liveness import gps_lost_since, offline_since
from rules.patrols.out_of_grid import out_of_grid_since
from rules.patrols.state import Officer

Rule = Callable[[Fleet, Idx, float], Floats]

RULES: dict[str, tuple[Rule, str]] = {
    "patrol_idle": (idle_since, "yellow"),
    "patrol_out_of_grid": (out_of_grid_since, "yellow"),
    "patrol_gps_lost": (gps_lost_since, "red"),
    "device_offline": (offline_since, "red"),
}
assert tuple(RULES) == RULE_NAMES

TIMED = ("patrol_gps_lost", "device_offline")
"""The rules that come true by time passing alone; the others change only with observations."""

_SUMMARY = {
    "patrol_idle": "原地停留",
    "patrol_out_of_grid": "离开责任网格",
    "patrol_gps_lost": "GPS信号丢失",
    "device_offline": "终端离线",
}


def evaluate(
    f: Fleet,
    officers: Sequence[Officer | None],
    idx: Idx,
    now: float,
    rules: Sequence[str] = RULE_NAMES,
) -> list[tuple[int, AlertEvent]]:
    """(slot, event) for the conditions that started or ended among ``idx``; updates ``firing``.

    Events come per slot in the order of ``idx``, and per slot in the order of :data:`RULES`.
    """
    found: list[tuple[Idx, Idx, int, Floats, Floats, bool]] = []
    for name in rules:
        i = RULE_NAMES.index(name)
        bit = np.uint8(1 << i)
        since = RULES[name][0](f, idx, now)
        holds = ~np.isnan(since)
        was = (f.firing[idx] & bit) != 0
        fire = np.flatnonzero(holds & ~was)
        gone = np.flatnonzero(~holds & was)
        if len(fire):
            s = idx[fire]
            f.firing[s] |= bit
            f.fired_since[s, i] = since[fire]
            found.append((fire, s, i, since[fire], since[fire], True))
        if len(gone):
            s = idx[gone]
            f.firing[s] &= ~bit
            found.append((gone, s, i, np.full(len(s), now), f.fired_since[s, i], False))
    out: list[tuple[int, int, int, AlertEvent]] = []
    for pos, slots, i, at, since, firing in found:
        name = RULE_NAMES[i]
        severity = RULES[name][1]
        status = "firing" if firing else "resolved"
        for p, slot, a, s in zip(
            pos.tolist(), slots.tolist(), at.tolist(), since.tolist(), strict=True
        ):
            o = officers[slot]
            if o is not None:
                out.append((p, i, slot, _event(o, f, slot, name, severity, status, a, now, s)))
    out.sort(key=lambda e: (e[0], e[1]))
    return [(slot, e) for _, _, slot, e in out]


def _event(
    p: Officer,
    f: Fleet,
    slot: int,
    rule: str,
    severity: str,
    status: str,
    at: float,
    now: float,
    since: float,
) -> AlertEvent:
    labels = {"officer": p.officer}
    for name in ("device", "lead", "role"):
        value = getattr(p, name)
        if value:
            labels[name] = value
    if p.grids:
        labels["grid"] = p.grids[0]
    values = {"since": since, "held": max(0.0, now - since)}
    fix_ts = float(f.pos_ts[slot])
    if fix_ts == fix_ts:  # not NaN: the officer has had a position
        values.update(fix_ts=fix_ts, lon=float(f.pos_lon[slot]), lat=float(f.pos_lat[slot]))
    return AlertEvent(
        rule=rule,
        status=status,
        severity=severity,
        city=p.city,
        subject_kind="officer",
        subject=p.officer,
        at=at,
        labels=labels,
        values=values,
        summary=f"{p.officer} {_SUMMARY[rule]} {duration_zh(now - since)}",
    )
