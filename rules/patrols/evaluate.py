"""Turning the patrol rules' conditions into alert events, and when to look again.

Each rule (:data:`rules.patrols.specs.PATROL_RULES`) is a pure function of
(fleet, slots, now) returning, per slot, since when its condition holds, or NaN.
``evaluate`` compares that with what alerting was told (the ``firing`` bits) and
returns the events that bring it in line; ``next_instants`` says when a timed
rule will come true if nothing more arrives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from citywatch.durations import duration_zh
from citywatch.models import AlertEvent
from citywatch.rules.patrols.fleet import Fleet, Floats, Idx
from citywatch.rules.patrols.specs import INDEX, PATROL_RULES, RULE_NAMES, PatrolRuleSpec
from citywatch.rules.patrols.state import Officer

TIMED = tuple(s.name for s in PATROL_RULES if s.timed)
"""The rules that come true by time passing alone; the others change only with observations."""

# Per timed rule: its due function, and the bits that, set, mean it cannot start.
_DUE = tuple(
    (s.due, (1 << INDEX[s.name]) | sum(1 << INDEX[m] for m in s.masked_by))
    for s in PATROL_RULES
    if s.due is not None
)


def evaluate(
    f: Fleet,
    officers: Sequence[Officer | None],
    idx: Idx,
    now: float,
    rules: Sequence[str] = RULE_NAMES,
) -> list[tuple[int, AlertEvent]]:
    """(slot, event) for the conditions that started or ended among ``idx``; updates ``firing``.

    Events come per slot in the order of ``idx``, and per slot in the order of the rules.
    """
    found: list[tuple[Idx, Idx, int, Floats, Floats, bool]] = []
    flag = f.firing.dtype.type
    for name in rules:
        i = INDEX[name]
        bit = flag(1 << i)
        since = PATROL_RULES[i].since(f, idx, now)
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
        spec = PATROL_RULES[i]
        status = "firing" if firing else "resolved"
        for p, slot, a, s in zip(
            pos.tolist(), slots.tolist(), at.tolist(), since.tolist(), strict=True
        ):
            o = officers[slot]
            if o is not None:
                out.append((p, i, slot, _event(o, f, slot, spec, status, a, now, s)))
    out.sort(key=lambda e: (e[0], e[1]))
    return [(slot, e) for _, _, slot, e in out]


def next_instants(f: Fleet, idx: Idx) -> Floats:
    """Per slot, when a timed rule will start to hold if nothing more arrives (or NaN)."""
    firing = f.firing[idx]
    out: Floats | None = None
    for due, bits in _DUE:
        at = np.where(firing & bits, np.nan, due(f, idx))
        out = at if out is None else np.fmin(out, at)
    if out is None:  # no timed rules
        return np.full(len(idx), np.nan)
    return np.where(f.active(idx), out, np.nan)


def _event(
    p: Officer,
    f: Fleet,
    slot: int,
    spec: PatrolRuleSpec,
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
        rule=spec.name,
        status=status,
        severity=spec.severity,
        city=p.city,
        subject_kind="officer",
        subject=p.officer,
        at=at,
        labels=labels,
        values=values,
        summary=f"{p.officer} {spec.summary} {duration_zh(now - since)}",
    )
