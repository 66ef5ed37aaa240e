"""Reading officers saved by version 1 of the store (one JSON document per officer)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from citywatch.rules.patrols.fleet import Fleet, K
from citywatch.rules.patrols.geometry import AssignmentTable
from citywatch.rules.patrols.specs import INDEX
from citywatch.rules.patrols.state import Officer
from citywatch.rules.patrols.track import to_metres


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def restore_v1(
    f: Fleet, blob: bytes, table: AssignmentTable | None
) -> tuple[Officer, dict[str, Any] | None]:
    """The officer of a version 1 document, in a fresh slot if on shift; and the coverage doc.

    Fill the slot's assignment (``f.assign``) before :func:`restore_coverage`.
    """
    outer = orjson.loads(blob)
    d = outer["patrol"]
    sites = {k: (float(v[0]), float(v[1])) for k, v in (d.get("sites") or {}).items()}
    o = Officer(
        d["city"], d["officer"], d.get("device"), tuple(d.get("grids") or ()),
        d.get("lead"), d.get("role"), sites or None,
    )  # fmt: skip
    if not d.get("on_shift"):
        return o, None
    s = o.slot = f.alloc()
    f.on_shift[s], f.on_break[s] = True, bool(d.get("on_break"))
    for name in ("watched_since", "last_seen", "last_good_fix", "out_since", "newest_fix"):
        f.cols[name][s] = _num(d.get(name))
    f.offline[s], f.outside[s] = bool(d.get("offline")), bool(d.get("outside"))
    if d.get("position"):
        f.pos_ts[s], f.pos_lon[s], f.pos_lat[s] = (float(v) for v in d["position"])
    track = sorted(tuple(pt) for pt in d.get("track") or ())[-K:]
    if track:
        t, lon, lat = (np.array(c, dtype=np.float64) for c in zip(*track, strict=True))
        f.origin_t[s], f.origin_lon[s], f.origin_lat[s] = t[0], lon[0], lat[0]
        x, y = to_metres(f, np.full(len(t), s, dtype=np.intp), t, lon, lat)
        n = len(t)
        f.ring_t[:n, s], f.ring_x[:n, s], f.ring_y[:n, s] = t - t[0], x, y
        f.head[s], f.count[s], f.t_last[s] = n - 1, n, t[-1]
        f.t_prev[s] = t[-2] if n > 1 else math.nan
    for rule, since in (d.get("firing") or {}).items():
        if rule in INDEX:
            i = INDEX[rule]
            f.firing[s] |= f.firing.dtype.type(1 << i)
            f.fired_since[s, i] = float(since)
    return o, outer.get("coverage")


def restore_coverage(f: Fleet, slot: int, doc: dict[str, Any], table: AssignmentTable) -> None:
    """Distance, last accepted fix and visited cells from a version 1 coverage doc."""
    f.distance[slot] = float(doc.get("distance_m") or 0.0)
    last = doc.get("last")
    if last:
        f.cov_lon[slot], f.cov_lat[slot], f.cov_ts[slot] = (float(v) for v in last)
    a = int(f.assign[slot])
    if a < 0:
        return
    cells = table.cells[a]
    for code in doc.get("visited") or ():
        if code in cells:
            i = cells.index(code)
            f.visited[slot, i >> 6] |= np.uint64(1) << np.uint64(i & 63)
