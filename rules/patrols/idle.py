"""``patrol_idle``: the officer stayed within ``radius`` for ``window``.

Judged on how far the officer moved over the window (the spread of accurate
fixes around their centre), not on reported speed, which handhelds get wrong:
drift within the radius is not movement, a slow walk leaves it. Vectorised over
slots: the ring holds the window and the last point before it.
"""

from __future__ import annotations

import numpy as np

from citywatch.geo import haversine_m
from citywatch.rules.patrols.fleet import Bools, Fleet, Floats, Idx
from citywatch.rules.patrols.track import M_PER_DEG

_CHUNK = 4096


def idle_since(f: Fleet, idx: Idx, now: float) -> Floats:
    """Per slot, the fix time since which the officer has been idle, or NaN.

    The result for a track is kept until the track, the case sites or the thresholds
    change (``idle_stale``): it does not depend on ``now``.
    """
    stale = idx[f.idle_stale[idx]]
    if len(stale):
        f.idle_at[stale] = idle_of_tracks(f, stale)
        f.idle_stale[stale] = False
    return np.where(f.active(idx), f.idle_at[idx], np.nan)


def idle_of_tracks(f: Fleet, idx: Idx) -> Floats:
    """Per slot, from its ring alone: since when the officer has stayed put, or NaN."""
    out = np.full(len(idx), np.nan)
    if not len(idx):
        return out
    hi = int(idx.max()) + 1
    # Many slots: work on the whole run of slots up to the last (no gathering copy of the
    # rings) and pick the wanted ones after; few: gather them.
    cols: Idx | slice = slice(0, hi) if 2 * len(idx) >= hi else idx
    pick = idx if isinstance(cols, slice) else np.arange(len(idx))
    with np.errstate(all="ignore"):  # slots not asked for may hold anything
        if isinstance(cols, slice):
            # A few thousand slots at a time: each step's arrays stay in the CPU's cache.
            parts = [_kernel(f, slice(i, min(i + _CHUNK, hi))) for i in range(0, hi, _CHUNK)]
            cx, cy, r, idle = (np.concatenate(p) for p in zip(*parts, strict=True))
        else:
            cx, cy, r, idle = _kernel(f, cols)
    idle = idle[pick]
    for i in np.flatnonzero(idle & f.has_sites[idx]).tolist():
        slot = int(idx[i])
        olat = float(f.origin_lat[slot])
        j = int(pick[i])
        lat = olat + float(cy[j]) / M_PER_DEG
        lon = float(f.origin_lon[slot]) + float(cx[j]) / (M_PER_DEG * np.cos(np.radians(olat)))
        for slon, slat in f.sites.get(slot, {}).values():
            if haversine_m(lon, lat, slon, slat) <= float(r[j]):
                idle[i] = False  # at the site of a case the officer is handling: that is work
                break
    out[idle] = (f.t_last[idx] - f.window[idx])[idle]
    return out


def _kernel(f: Fleet, cols: Idx | slice) -> tuple[Floats, Floats, Floats, Bools]:
    """Centre (metres from the origin), radius, and whether idle, of the rings of ``cols``."""
    t = f.ring_t[:, cols]
    origin = f.origin_t[cols]
    start = f.t_last[cols] - f.window[cols]
    anchor = np.where(t <= (start - origin).astype(np.float32), t, -np.inf).max(axis=0)
    # Not watched for a whole window yet, or the window reaches back before the watch.
    covered = (anchor > -np.inf) & ~(anchor < f.watched_since[cols] - origin - 1e-3)
    valid = t >= anchor
    n = valid.sum(axis=0, dtype=np.float32)
    zero = np.float32(0)
    x = np.where(valid, f.ring_x[:, cols], zero)
    y = np.where(valid, f.ring_y[:, cols], zero)
    cx = x.sum(axis=0) / np.maximum(n, 1)
    cy = y.sum(axis=0) / np.maximum(n, 1)
    x -= cx
    y -= cy
    x *= x
    y *= y
    x += y
    r = f.radius[cols]
    still = ~((x > r * r) & valid).any(axis=0)
    return cx, cy, r, covered & (n >= 2) & still
