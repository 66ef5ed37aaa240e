"""``patrol_out_of_grid``: outside every assigned cell (plus the buffer) for longer than ``after``.

A state, not an edge: it holds from the first fix outside, whether or not a
border was crossed while watched, and ends only once the officer is back inside
by more than the buffer (see :func:`rules.patrols.state.on_fix`).
"""

from __future__ import annotations

from rules.patrols.config import Thresholds
from rules.patrols.state import Patrol


def out_of_grid_since(p: Patrol, th: Thresholds, now: float) -> float | None:
    if not p.active or not p.outside or p.out_since is None or p.newest_fix is None:
        return None
    return p.out_since if p.newest_fix - p.out_since >= th.out_of_grid.after else None
