"""``patrol_out_of_grid``: outside every assigned cell (plus the buffer) for longer than ``after``.

A state, not an edge: it holds from the first fix outside, whether or not a
border was crossed while watched, and ends only once the officer is back inside
by more than the buffer (see :func:`rules.patrols.state.apply_fixes`).
"""

from __future__ import annotations

import numpy as np

from citywatch.rules.patrols.fleet import Fleet, Floats, Idx


def out_of_grid_since(f: Fleet, idx: Idx, now: float) -> Floats:
    """Per slot, the fix time since which the officer has been outside, or NaN."""
    since = f.out_since[idx]
    held = f.active(idx) & f.outside[idx] & (f.newest_fix[idx] - since >= f.out_after[idx])
    return np.where(held, since, np.nan)
