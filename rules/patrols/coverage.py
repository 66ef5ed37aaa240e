"""One shift's coverage of its assigned cells, per slot: cells visited and distance walked.

As :class:`rules.patrols.grids.Coverage`, in columns: a fix is accepted when its
``ts`` is later than the last accepted fix and reaching it from there needs at
most ``MAX_SPEED_MPS``; faster is a GPS outlier. Each accepted fix adds its
great-circle step to ``distance`` and sets the bit of the assigned cell it lies
in (cells in the order of :attr:`AssignmentTable.cells`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from citywatch.geo import EARTH_RADIUS_M
from citywatch.rules.patrols.fleet import Fleet, Floats, Idx

MAX_SPEED_MPS = 5.0


def reset(f: Fleet, slot: int) -> None:
    """A new shift: nothing visited, nothing walked."""
    f.cov_lon[slot] = f.cov_lat[slot] = f.cov_ts[slot] = math.nan
    f.distance[slot] = 0.0
    f.visited[slot] = 0


def haversine(lon1: Floats, lat1: Floats, lon2: Floats, lat2: Floats) -> Floats:
    """Great-circle metres, elementwise (as :func:`citywatch.geo.haversine_m`)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h))))


def add(
    f: Fleet, s: Idx, ts: Floats, lon: Floats, lat: Floats, cell: npt.NDArray[np.int64]
) -> None:
    """Take one fix for each slot of ``s`` (distinct slots), with its assigned cell or -1."""
    if not len(s):
        return
    last = f.cov_ts[s]
    had = ~np.isnan(last)
    step = haversine(f.cov_lon[s], f.cov_lat[s], lon, lat)
    finite = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(ts)
    with np.errstate(invalid="ignore"):
        ok = finite & (~had | ((ts > last) & (step <= MAX_SPEED_MPS * (ts - last))))
    f.distance[s] += np.where(ok & had, step, 0.0)
    a = s[ok]
    f.cov_lon[a], f.cov_lat[a], f.cov_ts[a] = lon[ok], lat[ok], ts[ok]
    v = ok & (cell >= 0)
    c = cell[v]
    f.visited[s[v], c >> 6] |= np.left_shift(np.uint64(1), (c & 63).astype(np.uint64))


def visited_count(f: Fleet, idx: Idx) -> npt.NDArray[np.int64]:
    """Cells visited, per slot."""
    return np.asarray(np.bitwise_count(f.visited[idx]).sum(axis=1), dtype=np.int64)
