"""Point-in-polygon for a batch of fixes, each against its own officer's assigned cells.

Every distinct assignment (set of cell codes) gets a row in padded tables: the
union's boundary edges (for the signed distance, as :meth:`Assignment.signed_distance_m`)
and every assigned cell's ring edges (for which cell a fix lies in, for
coverage). A batch of fixes is then located with a few numpy operations over
(fixes x edges), whatever mix of assignments the fixes belong to. Officers with
the same cells share the row.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

from citywatch.rules.patrols.grids import Assignment, Grids

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

_FAR = 1e12  # padding edges sit this far away, horizontal, so they never count
_M_PER_DEG = 6_371_008.8 * math.pi / 180.0


def _pad(rows: list[Floats], width: int, fill: float) -> Floats:
    out = np.full((len(rows), width, rows[0].shape[1] if rows else 4), fill, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class AssignmentTable:
    """Assignments indexed by a small integer, located in bulk by :meth:`locate`."""

    def __init__(self, grids: Grids) -> None:
        self.grids = grids
        self._ids: dict[frozenset[str], int] = {}
        self.assignments: list[Assignment] = []
        self.cells: list[tuple[str, ...]] = []
        """Each assignment's cell codes, sorted: bit ``i`` of coverage is ``cells[id][i]``."""
        self._frames: list[tuple[float, float, float]] = []
        self._bounds: list[Floats] = []
        self._rings: list[Floats] = []
        self._cell_ends: list[list[int]] = []
        self._stale = True
        self.max_cells = 0

    def __len__(self) -> int:
        return len(self.assignments)

    def id_of(self, codes: tuple[str, ...] | frozenset[str]) -> int:
        """The row of this set of codes (added if new); ``ValueError`` for unknown codes."""
        key = frozenset(codes)
        found = self._ids.get(key)
        if found is not None:
            return found
        a = self.grids.assignment(key)
        lon0, lat0, kx, ky = a.frame
        cells = tuple(sorted(key))
        rings: list[tuple[float, float, float, float]] = []
        ends: list[int] = []
        for code in cells:
            for polygon in self.grids.polygons(code):
                for ring in polygon:
                    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
                        rings.append(
                            ((x1 - lon0) * kx, (y1 - lat0) * ky, (x2 - lon0) * kx, (y2 - lat0) * ky)
                        )
            ends.append(len(rings))
        self._ids[key] = len(self.assignments)
        self.assignments.append(a)
        self.cells.append(cells)
        self._frames.append((lon0, lat0, kx))
        self._bounds.append(a.edges.reshape(-1, 4))
        self._rings.append(np.array(rings, dtype=np.float64).reshape(-1, 4))
        self._cell_ends.append(ends)
        self.max_cells = max(self.max_cells, len(cells))
        self._stale = True
        return self._ids[key]

    def _build(self) -> None:
        nb = max((len(b) for b in self._bounds), default=1) or 1
        nr = max((len(r) for r in self._rings), default=1) or 1
        self._frame = np.array(self._frames, dtype=np.float64).reshape(-1, 3)
        self._bound = _pad(self._bounds, nb, _FAR)
        self._ring = _pad(self._rings, nr, _FAR)
        nc = max(self.max_cells, 1)
        ends = np.zeros((len(self._cell_ends), nc), dtype=np.int64)
        starts = np.zeros_like(ends)
        for i, e in enumerate(self._cell_ends):
            ends[i, : len(e)] = e
            starts[i, : len(e)] = [0, *e[:-1]]
        self._ends, self._starts = ends, starts
        self._stale = False

    def locate(self, ids: Ints, lon: Floats, lat: Floats) -> tuple[Floats, Ints]:
        """Signed metres from each fix to its assignment's union (negative inside), and the
        index of the assigned cell holding it (into :attr:`cells`), or -1."""
        if self._stale:
            self._build()
        frame = self._frame[ids]
        x = ((lon - frame[:, 0]) * frame[:, 2])[:, None]
        y = ((lat - frame[:, 1]) * _M_PER_DEG)[:, None]
        b = self._bound[ids]
        ax, ay, bx, by = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        abx, aby = bx - ax, by - ay
        inside = (_crossings(x, y, ax, ay, abx, aby).sum(axis=1) & 1).astype(bool)
        den = abx * abx + aby * aby
        t = np.clip(((x - ax) * abx + (y - ay) * aby) / np.where(den > 0, den, 1.0), 0.0, 1.0)
        d = np.sqrt(((x - ax - t * abx) ** 2 + (y - ay - t * aby) ** 2).min(axis=1))
        r = self._ring[ids]
        rax, ray = r[..., 0], r[..., 1]
        cross = _crossings(x, y, rax, ray, r[..., 2] - rax, r[..., 3] - ray)
        cum = np.zeros((len(ids), cross.shape[1] + 1), dtype=np.int64)
        np.cumsum(cross, axis=1, out=cum[:, 1:])
        odd = (
            np.take_along_axis(cum, self._ends[ids], axis=1)
            - np.take_along_axis(cum, self._starts[ids], axis=1)
        ) & 1
        cell = np.where(odd.any(axis=1), odd.argmax(axis=1), -1)
        return np.where(inside, -d, d), cell


def _crossings(x: Floats, y: Floats, ax: Floats, ay: Floats, abx: Floats, aby: Floats) -> Ints:
    """Which edges a rightward ray from each point crosses (as 0/1)."""
    straddle = (ay > y) != ((ay + aby) > y)
    safe = np.where(aby != 0, aby, 1.0)
    return np.asarray(straddle & (x < ax + (y - ay) * abx / safe), dtype=np.int64)
