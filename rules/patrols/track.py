"""The ring buffer of recent accurate fixes: adding points, thinned and bounded.

Points are kept at least ``window / THIN`` apart (the newest one moves until the
next is that far from the one before it), so a window fits in the ring; the
oldest entry is overwritten only once a newer one reaches back a whole window.
A fix older than the newest (a buffered upload) is placed by its fix time: the
slot's row is rebuilt in order, the densest points merged if it overflows.
"""

from __future__ import annotations

import math

import numpy as np

from citywatch.rules.patrols.fleet import THIN, Fleet, Floats, Idx, K

M_PER_DEG = 6_371_008.8 * math.pi / 180.0


def to_metres(f: Fleet, s: Idx, t: Floats, lon: Floats, lat: Floats) -> tuple[Floats, Floats]:
    """Metres east and north of each slot's origin, set at its first point."""
    fresh = np.isnan(f.origin_lon[s])
    if fresh.any():
        f.origin_t[s[fresh]] = t[fresh]
        f.origin_lon[s[fresh]] = lon[fresh]
        f.origin_lat[s[fresh]] = lat[fresh]
    olat = f.origin_lat[s]
    x = (lon - f.origin_lon[s]) * (M_PER_DEG * np.cos(np.radians(olat)))
    return x, (lat - olat) * M_PER_DEG


def add_points(f: Fleet, s: Idx, t: Floats, lon: Floats, lat: Floats) -> None:
    """Add one point to each slot of ``s`` (distinct slots)."""
    x, y = to_metres(f, s, t, lon, lat)
    f.idle_stale[s] = True
    last, prev, window = f.t_last[s], f.t_prev[s], f.window[s]
    rel = t - f.origin_t[s]
    inorder = np.isnan(last) | (t >= last)
    replace = inorder & (t - prev < window / THIN)
    head = f.head[s].astype(np.intp)
    pos = np.where(replace, head, (head + 1) % K)
    # A full ring drops its oldest entry only if the next one still reaches back a window.
    oldest_needed = (f.count[s] >= K) & ~(f.ring_t[(pos + 1) % K, s] <= rel - window)
    fast = inorder & ~(oldest_needed & ~replace)
    fs, fp = s[fast], pos[fast]
    f.ring_t[fp, fs] = rel[fast]
    f.ring_x[fp, fs] = x[fast]
    f.ring_y[fp, fs] = y[fast]
    f.t_prev[fs] = np.where(replace[fast], prev[fast], last[fast])
    f.t_last[fs] = t[fast]
    f.head[fs] = fp
    f.count[fs] = np.minimum(f.count[fs] + ~replace[fast], K)
    for i in np.flatnonzero(~fast).tolist():
        insert(f, int(s[i]), float(t[i]), float(x[i]), float(y[i]))


def insert(f: Fleet, slot: int, t: float, x: float, y: float) -> None:
    """Place a point by its time: rebuild the slot's row in order, within K entries."""
    origin = float(f.origin_t[slot])
    tt, xx, yy = f.ring_t[:, slot], f.ring_x[:, slot], f.ring_y[:, slot]  # views
    keep = ~np.isnan(tt)
    ts = np.append(tt[keep], np.float32(t - origin))
    xs = np.append(xx[keep], np.float32(x))
    ys = np.append(yy[keep], np.float32(y))
    order = np.argsort(ts, kind="stable")
    ts, xs, ys = ts[order], xs[order], ys[order]
    # Points before the last one that reaches back a window are not needed any more.
    start = ts[-1] - f.window[slot]
    first = max(0, int(np.searchsorted(ts, start, side="right")) - 1)
    ts, xs, ys = ts[first:], xs[first:], ys[first:]
    while len(ts) > K:
        i = 1 + int(np.argmin(ts[2:] - ts[:-2]))  # the interior point with the nearest neighbours
        ts, xs, ys = np.delete(ts, i), np.delete(xs, i), np.delete(ys, i)
    n = len(ts)
    tt[:] = np.nan
    tt[:n], xx[:n], yy[:n] = ts, xs, ys
    f.head[slot], f.count[slot] = n - 1, n
    f.t_last[slot] = np.fmax(f.t_last[slot], t)
    f.t_prev[slot] = origin + float(ts[-2]) if n > 1 else math.nan
    f.idle_stale[slot] = True
