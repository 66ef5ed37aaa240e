"""``patrol_idle``: the officer stayed within ``radius`` for ``window``.

Judged on how far the officer moved over the window (the spread of accurate
fixes around their centre), not on reported speed, which handhelds get wrong:
drift within the radius is not movement, a slow walk leaves it. Vectorised over
slots: the ring holds the window and the last point before it.
"""

from __future__ import annotations

import numpy as np

from citywatch.geo import haversine_m
from rules.patrols.fleet import Fleet, Floats, Idx
from rules.patrols.track import M_PER_DEG


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
    # Only slots with two points or more can be idle.
    has = np.flatnonzero(f.count[idx] >= 2)
    cand = idx[has]
    if not len(cand):
        return out
    t = f.ring_t[cand]
    origin = f.origin_t[cand]
    start = f.t_last[cand] - f.window[cand]
    start_rel = (start - origin).astype(np.float32)
    with np.errstate(invalid="ignore"):
        anchor = np.where(t <= start_rel[:, None], t, -np.inf).max(axis=1)
        watched = f.watched_since[cand] - origin
        # Not watched for a whole window yet, or the window reaches back before the watch.
        covered = (anchor > -np.inf) & ~(anchor < watched - 1e-3)
        valid = t >= anchor[:, None]
    n = valid.sum(axis=1)
    zero = np.float32(0)
    x = np.where(valid, f.ring_x[cand], zero)
    y = np.where(valid, f.ring_y[cand], zero)
    cx = (x.sum(axis=1) / np.maximum(n, 1)).astype(np.float32)
    cy = (y.sum(axis=1) / np.maximum(n, 1)).astype(np.float32)
    r = f.radius[cand]
    d2 = (x - cx[:, None]) ** 2 + (y - cy[:, None]) ** 2
    still = ~((d2 > (r * r)[:, None]) & valid).any(axis=1)
    idle = covered & (n >= 2) & still
    for i in np.flatnonzero(idle & f.has_sites[cand]).tolist():
        slot = int(cand[i])
        olat = float(f.origin_lat[slot])
        lat = olat + float(cy[i]) / M_PER_DEG
        lon = float(f.origin_lon[slot]) + float(cx[i]) / (M_PER_DEG * np.cos(np.radians(olat)))
        for slon, slat in f.sites.get(slot, {}).values():
            if haversine_m(lon, lat, slon, slat) <= float(r[i]):
                idle[i] = False  # at the site of a case the officer is handling: that is work
                break
    out[has] = np.where(idle, start, np.nan)
    return out
