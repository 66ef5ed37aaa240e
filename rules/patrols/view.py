"""Read-only views of the patrol rule's state, for the API: officers on shift."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from rules.patrols import coverage
from rules.patrols.fleet import RULE_NAMES, Fleet

if TYPE_CHECKING:
    from rules.patrols.rule import PatrolRule

STATES = ("patrolling", "idle", "out_of_grid", "gps_lost", "offline", "on_break")
# Most serious first: the state shown for an officer is the first whose rule fires.
_STATE_OF = {
    "device_offline": "offline",
    "patrol_gps_lost": "gps_lost",
    "patrol_out_of_grid": "out_of_grid",
    "patrol_idle": "idle",
}


def patrol_state(f: Fleet, slot: int) -> str | None:
    """The officer's state for people: the most serious condition that holds."""
    if slot < 0 or not f.on_shift[slot]:
        return None
    if f.on_break[slot]:
        return "on_break"
    firing = int(f.firing[slot])
    for rule, name in _STATE_OF.items():
        if firing & (1 << RULE_NAMES.index(rule)):
            return name
    return "patrolling"


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def officer_views(rule: PatrolRule) -> Iterator[dict[str, Any]]:
    """Each officer on shift: who, where, patrol state and coverage so far."""
    f = rule.fleet
    for o in list(rule.officers.values()):
        slot = o.slot
        state = patrol_state(f, slot)
        if state is None:
            continue
        lon, lat, ts = float(f.pos_lon[slot]), float(f.pos_lat[slot]), float(f.pos_ts[slot])
        visited = int(coverage.visited_count(f, np.asarray([slot]))[0])
        assigned = len(o.grids)
        yield {
            "city": o.city,
            "officer": o.officer,
            "device": o.device,
            "grids": list(o.grids),
            "lead": o.lead,
            "role": o.role,
            "state": state,
            "since": _num(float(f.watched_since[slot])),
            "position": None
            if math.isnan(lon) or math.isnan(lat)
            else {"ts": _num(ts), "lon": lon, "lat": lat},
            "coverage": {
                "assigned": assigned,
                "visited": visited,
                "share": visited / assigned if assigned else None,
                "distance_m": float(f.distance[slot]),
            },
        }
