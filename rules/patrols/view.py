"""Read-only views of the patrol rule's state, for the API: officers on shift."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from citywatch.rules.patrols import coverage
from citywatch.rules.patrols.fleet import Fleet
from citywatch.rules.patrols.specs import patrol_state
from citywatch.rules.patrols.state import Officer


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def officer_views(f: Fleet, officers: Iterable[Officer]) -> Iterator[dict[str, Any]]:
    """Each officer on shift: who, where, patrol state and coverage so far."""
    for o in list(officers):
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
