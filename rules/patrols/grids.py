"""Unit grid cells (万米单元网格): point location, distance to assigned cells, coverage.

A city is cut into cells of about 100 m x 100 m, read from a GeoJSON
FeatureCollection of Polygons or MultiPolygons with a string ``code``
property. Officers on shift are assigned a set of cells; the patrol rules ask,
for every GPS fix, which cell it falls in (:meth:`Grids.cell_at`) and how far
it is from the union of the assigned cells (:meth:`Grids.signed_distance_m`,
negative inside). Both take a few microseconds: cells sit in a uniform bucket
index, and each assignment is precomputed once (:class:`Assignment`, kept in
a bounded LRU cache). Cells are assumed not to overlap, as in any tiling.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citywatch.geo import EARTH_RADIUS_M, haversine_m

Ring = tuple[tuple[float, float], ...]
"""A closed ring of (lon, lat) WGS-84 positions: the first position is repeated last."""
Polygon = tuple[Ring, ...]
"""An exterior ring followed by its holes."""

_VERTEX_DEG = 1e-9  # endpoints equal at this resolution are one vertex
_MARGIN_M = 100.0  # an assignment's bucket grid reaches this far beyond the union
_TARGET_BUCKETS = 256
_MIN_BUCKET_M = 5.0
_SLACK_M = 1e-6  # covers rounding when a point is put in its bucket
_NUMPY_EDGES = 64  # from this many edges on, numpy beats a Python loop
_MAX_CELL_BUCKETS = 10_000
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

# Local frame, metres: ax, ay, bx, by, bx - ax, by - ay, 1 / |ab|², (bx - ax) / (by - ay).
_Edge = tuple[float, float, float, float, float, float, float, float]
# Parity of the edges crossing every ray from the bucket; edges maybe nearest; edges to test.
_Bucket = tuple[bool, tuple[_Edge, ...], tuple[_Edge, ...]]
# Degrees: x1, y1, y2, (x2 - x1) / (y2 - y1); horizontal edges never cross a ray, so are left out.
_RayEdge = tuple[float, float, float, float]
_Candidate = tuple[float, float, float, float, str, tuple[_RayEdge, ...]]
_Floats = npt.NDArray[np.float64]


def _segment_distance(px: Any, py: Any, edges: _Floats) -> _Floats:
    """Distances from points (broadcast against the edges) to segments, rows ax, ay, bx, by."""
    ax, ay, bx, by = edges.T
    abx, aby = bx - ax, by - ay
    t = np.clip(((px - ax) * abx + (py - ay) * aby) / (abx * abx + aby * aby), 0.0, 1.0)
    return np.asarray(np.hypot(px - ax - t * abx, py - ay - t * aby), dtype=np.float64)


def _edge(ax: float, ay: float, bx: float, by: float) -> _Edge:
    abx, aby = bx - ax, by - ay
    return (ax, ay, bx, by, abx, aby, 1.0 / (abx * abx + aby * aby), abx / aby if aby else 0.0)


class Assignment:
    """The union of one assignment's cells, precomputed for :meth:`signed_distance_m`.

    An edge met an even number of times among the cells' rings (same endpoints
    to 1e-9 degrees, either direction) is shared between cells, so interior;
    the others bound the union and are kept as ``edges`` (rows ax, ay, bx, by,
    in metres) in a local equirectangular frame centred on the union:
    x = R cos(lat0) dlon, y = R dlat. Ray casting over those edges alone tells
    inside from outside, since shared edges cancel in pairs. Square buckets
    over the union and 100 m around it keep the few edges that can be nearest
    to their points and most of the ray-casting parity, so a query usually
    looks at two or three edges; farther points scan them all.
    """

    def __init__(self, codes: frozenset[str], polygons: Iterable[Polygon]) -> None:
        self.codes = codes
        boundary: dict[tuple[tuple[int, int], tuple[int, int]], tuple[float, ...]] = {}
        for ring in (ring for polygon in polygons for ring in polygon):
            for p, q in itertools.pairwise(ring):
                kp = (round(p[0] / _VERTEX_DEG), round(p[1] / _VERTEX_DEG))
                kq = (round(q[0] / _VERTEX_DEG), round(q[1] / _VERTEX_DEG))
                key = (kp, kq) if kp < kq else (kq, kp)
                if kp != kq and boundary.pop(key, None) is None:
                    boundary[key] = (*p, *q)
        deg = np.array(list(boundary.values()), dtype=np.float64).reshape(-1, 4)
        lon0, lat0 = (deg.min(axis=0) + deg.max(axis=0))[:2] / 2 if len(deg) else (0.0, 0.0)
        self._lon0, self._lat0 = float(lon0), float(lat0)
        self._kx, self._ky = _M_PER_DEG * math.cos(math.radians(self._lat0)), _M_PER_DEG
        self.edges: _Floats = (deg - [lon0, lat0, lon0, lat0]) * ([self._kx, self._ky] * 2)
        self.edges.flags.writeable = False
        self._all = tuple(_edge(*row) for row in self.edges.tolist())
        self._gx = self._gy = self._inv_s = 0.0
        self._nx = self._ny = 0
        if len(deg):
            self._index_buckets()

    def _index_buckets(self) -> None:
        """Cover the union and a margin with square buckets holding what their points need."""
        e = self.edges
        lo = e.reshape(-1, 2).min(axis=0) - _MARGIN_M
        w, h = e.reshape(-1, 2).max(axis=0) + _MARGIN_M - lo
        s = max(_MIN_BUCKET_M, math.sqrt(w * h / _TARGET_BUCKETS))
        nx, ny = math.ceil(w / s), math.ceil(h / s)
        px = np.tile(lo[0] + (np.arange(nx) + 0.5) * s, ny)[:, None]
        py = np.repeat(lo[1] + (np.arange(ny) + 0.5) * s, nx)[:, None]
        # Every point of a bucket is within half a diagonal of its centre, so its nearest
        # edge is within a diagonal of the centre's nearest distance, from the centre.
        dist = _segment_distance(px, py, e)
        near = dist <= dist.min(axis=1, keepdims=True) + 2 * (s * math.sqrt(0.5) + _SLACK_M)
        # A rightward ray from any point of the bucket crosses the `always` edges and no
        # edge outside `maybe`; only the rest must be tested per point.
        half = s / 2 + _SLACK_M
        ax, ay, bx, by = e.T
        ylo, yhi = np.minimum(ay, by), np.maximum(ay, by)
        xlo, xhi = np.minimum(ax, bx), np.maximum(ax, bx)
        maybe = (ylo < yhi) & (ylo <= py + half) & (yhi > py - half) & (xhi > px - half)
        always = (ylo < yhi) & (ylo <= py - half) & (yhi > py + half) & (xlo > px + half)
        odd = (always.sum(axis=1) % 2 == 1).tolist()
        # Most buckets look alike (inside one cell, away from corners), so they share entries.
        shared: dict[_Bucket, _Bucket] = {}
        self._buckets: list[_Bucket] = []
        for parity, nearby, crossing in zip(
            odd, near.tolist(), (maybe & ~always).tolist(), strict=True
        ):
            bucket = (
                parity,
                tuple(itertools.compress(self._all, nearby)),
                tuple(itertools.compress(self._all, crossing)),
            )
            self._buckets.append(shared.setdefault(bucket, bucket))
        self._gx, self._gy = float(lo[0]), float(lo[1])
        self._inv_s, self._nx, self._ny = 1 / s, nx, ny

    @property
    def frame(self) -> tuple[float, float, float, float]:
        """(lon0, lat0, kx, ky) of the local frame of :attr:`edges`: x = kx (lon - lon0)."""
        return self._lon0, self._lat0, self._kx, self._ky

    def signed_distance_m(self, lon: float, lat: float) -> float:
        """Metres from (lon, lat) to the union's boundary: negative inside, positive outside.

        Edges shared by two assigned cells are not boundary, so a point on one is
        inside; an empty assignment is infinitely far.
        """
        x, y = (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky
        fx, fy = (x - self._gx) * self._inv_s, (y - self._gy) * self._inv_s
        if 0.0 <= fx < self._nx and 0.0 <= fy < self._ny:
            inside, nearby, crossing = self._buckets[int(fy) * self._nx + int(fx)]
            for ax, ay, _, by, _, _, _, slope in crossing:
                if (ay > y) != (by > y) and x < ax + (y - ay) * slope:
                    inside = not inside
        elif len(self._all) >= _NUMPY_EDGES:
            return float(_segment_distance(x, y, self.edges).min())  # beyond the grid: outside
        else:
            inside, nearby = False, self._all
        best = math.inf
        for ax, ay, bx, by, abx, aby, inv, _ in nearby:
            dx, dy = x - ax, y - ay
            t = (dx * abx + dy * aby) * inv
            if t <= 0.0:
                d2 = dx * dx + dy * dy
            elif t >= 1.0:
                d2 = (x - bx) ** 2 + (y - by) ** 2
            else:
                d2 = (dx * aby - dy * abx) ** 2 * inv
            if d2 < best:
                best = d2
        return -math.sqrt(best) if inside else math.sqrt(best)


def _centroid(polygons: Sequence[Polygon]) -> tuple[float, float]:
    """Area centroid (holes subtracted, whatever the rings' orientation); vertex mean if flat."""
    ox, oy = polygons[0][0][0]
    area = mx = my = 0.0
    for polygon in polygons:
        for k, ring in enumerate(polygon):
            a = cx = cy = 0.0
            for (x1, y1), (x2, y2) in itertools.pairwise(ring):
                x1, y1, x2, y2 = x1 - ox, y1 - oy, x2 - ox, y2 - oy
                c = x1 * y2 - x2 * y1
                a, cx, cy = a + c, cx + (x1 + x2) * c, cy + (y1 + y2) * c
            sign = (1.0 if k == 0 else -1.0) * (1.0 if a >= 0 else -1.0)
            area, mx, my = area + sign * a / 2, mx + sign * cx / 6, my + sign * cy / 6
    if area == 0.0:
        xs, ys = zip(*(p for polygon in polygons for ring in polygon for p in ring), strict=True)
        return sum(xs) / len(xs), sum(ys) / len(ys)
    return ox + mx / area, oy + my / area


def _polygon(raw: Any, where: str) -> Polygon:
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError(f"{where}: a polygon needs a non-empty list of rings")
    rings: list[Ring] = []
    for raw_ring in raw:
        n = len(raw_ring) if isinstance(raw_ring, list | tuple) else 0
        if n < 4:
            raise ValueError(f"{where}: ring of {n} positions; a closed ring needs at least 4")
        ring: list[tuple[float, float]] = []
        for pos in raw_ring:
            xy = pos[:2] if isinstance(pos, list | tuple) else ()
            if len(xy) < 2 or not all(type(v) in (int, float) for v in xy):
                raise ValueError(f"{where}: malformed position {pos!r}")
            if not (math.isfinite(xy[0]) and math.isfinite(xy[1])):
                raise ValueError(f"{where}: non-finite coordinates {pos!r}")
            ring.append((float(xy[0]), float(xy[1])))
        rings.append(tuple(ring) if ring[0] == ring[-1] else (*ring, ring[0]))
    return tuple(rings)


class Grids:
    """The city's unit grid cells, indexed for point location and assignment distances.

    ``cells`` maps each code to its polygons (one for a Polygon, several for a
    MultiPolygon) with closed rings; :meth:`from_geojson` and :meth:`load`
    validate and build them. ``bucket_deg`` is the point-location bucket size;
    ``cache_size`` bounds the LRU cache of :class:`Assignment`.
    """

    def __init__(
        self,
        cells: Mapping[str, Sequence[Polygon]],
        *,
        bucket_deg: float = 0.001,
        cache_size: int = 4096,
    ) -> None:
        if not cells:
            raise ValueError("no grid cells")
        self._cells = {code: tuple(polygons) for code, polygons in cells.items()}
        self.codes: frozenset[str] = frozenset(self._cells)
        self._centroids = {code: _centroid(polygons) for code, polygons in self._cells.items()}
        self._k = 1.0 / bucket_deg
        index: dict[tuple[int, int], list[_Candidate]] = {}
        boxes: list[tuple[float, float, float, float]] = []
        for code, polygons in self._cells.items():
            rings = [ring for polygon in polygons for ring in polygon]
            xs, ys = zip(*(p for ring in rings for p in ring), strict=True)
            boxes.append(box := (min(xs), min(ys), max(xs), max(ys)))
            ray: tuple[_RayEdge, ...] = tuple(
                (x1, y1, y2, (x2 - x1) / (y2 - y1))
                for ring in rings
                for (x1, y1), (x2, y2) in itertools.pairwise(ring)
                if y1 != y2
            )
            ix0, iy0, ix1, iy1 = (math.floor(v * self._k) for v in box)
            if (ix1 - ix0 + 1) * (iy1 - iy0 + 1) > _MAX_CELL_BUCKETS:
                raise ValueError(f"cell {code!r} spans {box}, too large for a unit grid cell")
            for key in itertools.product(range(ix0, ix1 + 1), range(iy0, iy1 + 1)):
                index.setdefault(key, []).append((*box, code, ray))
        self._index = {key: tuple(candidates) for key, candidates in index.items()}
        west, south, east, north = zip(*boxes, strict=True)
        self.bounds = (min(west), min(south), max(east), max(north))
        """(min_lon, min_lat, max_lon, max_lat) of all cells."""
        self._cached = functools.lru_cache(maxsize=cache_size)(self._assign)

    @classmethod
    def from_geojson(
        cls,
        fc: Any,
        *,
        source: str = "<geojson>",
        bucket_deg: float = 0.001,
        cache_size: int = 4096,
    ) -> Grids:
        """Build from a GeoJSON FeatureCollection; errors name ``source`` and the feature index."""
        features = fc.get("features") if isinstance(fc, Mapping) else None
        if not isinstance(features, list) or fc.get("type") != "FeatureCollection":
            raise ValueError(f"{source}: not a GeoJSON FeatureCollection with a 'features' list")
        cells: dict[str, Sequence[Polygon]] = {}
        first: dict[str, int] = {}
        for i, feature in enumerate(features):
            props = feature.get("properties") if isinstance(feature, Mapping) else None
            code = props.get("code") if isinstance(props, Mapping) else None
            if not isinstance(code, str) or not code:
                raise ValueError(f"{source}: feature {i}: no string property 'code'")
            where = f"{source}: feature {i} ({code})"
            if code in first:
                raise ValueError(f"{where}: duplicate code, first at feature {first[code]}")
            geometry = feature.get("geometry")
            geometry = geometry if isinstance(geometry, Mapping) else {}
            kind, coordinates = geometry.get("type"), geometry.get("coordinates")
            if kind == "Polygon":
                cells[code] = (_polygon(coordinates, where),)
            elif kind == "MultiPolygon" and isinstance(coordinates, list | tuple) and coordinates:
                cells[code] = tuple(_polygon(part, where) for part in coordinates)
            elif kind == "MultiPolygon":
                raise ValueError(f"{where}: a MultiPolygon needs a non-empty list of polygons")
            else:
                raise ValueError(f"{where}: geometry must be Polygon or MultiPolygon, got {kind!r}")
            first[code] = i
        try:
            return cls(cells, bucket_deg=bucket_deg, cache_size=cache_size)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path, *, bucket_deg: float = 0.001, cache_size: int = 4096) -> Grids:
        """Read the ``grids_file`` GeoJSON; any problem is a ``ValueError`` naming the file."""
        try:
            # utf-8-sig: GIS tools on Windows often write a byte-order mark.
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read grids file: {exc}") from exc
        try:
            # Unlike orjson, the standard parser accepts NaN and Infinity, so such
            # coordinates are reported with their feature rather than as bad JSON.
            fc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from exc
        return cls.from_geojson(fc, source=str(path), bucket_deg=bucket_deg, cache_size=cache_size)

    def __contains__(self, code: object) -> bool:
        return code in self._cells

    def unknown(self, codes: Iterable[str]) -> list[str]:
        """The codes (sorted, once each) that are not cells of this grid."""
        return sorted({code for code in codes if code not in self._cells})

    def polygons(self, code: str) -> tuple[Polygon, ...]:
        """The polygons of the cell ``code``; ``KeyError`` for an unknown code."""
        return self._cells[code]

    def centroid(self, code: str) -> tuple[float, float]:
        """(lon, lat) of the cell's area centroid; ``KeyError`` for an unknown code."""
        return self._centroids[code]

    def cell_at(self, lon: float, lat: float) -> str | None:
        """Code of the cell containing (lon, lat), or ``None``.

        A point on an edge shared by two cells belongs to just one of them.
        """
        for x0, y0, x1, y1, code, ray in self._index.get(
            (math.floor(lon * self._k), math.floor(lat * self._k)), ()
        ):
            if x0 <= lon <= x1 and y0 <= lat <= y1:
                inside = False
                for ax, ay, by, slope in ray:
                    if (ay > lat) != (by > lat) and lon < ax + (lat - ay) * slope:
                        inside = not inside
                if inside:
                    return code
        return None

    def assignment(self, codes: Iterable[str]) -> Assignment:
        """The precomputed union of ``codes``, cached; ``ValueError`` naming unknown codes."""
        return self._cached(codes if type(codes) is frozenset else frozenset(codes))

    def _assign(self, codes: frozenset[str]) -> Assignment:
        unknown = self.unknown(codes)
        if unknown:
            raise ValueError(f"unknown grid codes: {', '.join(unknown)}")
        return Assignment(codes, (p for code in codes for p in self._cells[code]))

    def signed_distance_m(self, codes: Iterable[str], lon: float, lat: float) -> float:
        """Metres from (lon, lat) to the union of ``codes``: negative inside, positive outside.

        Inside, minus the distance to the union's boundary (edges shared by two
        assigned cells are not boundary); outside, the distance to the nearest
        assigned cell. A ``frozenset`` of codes saves a conversion per call.
        """
        key = codes if type(codes) is frozenset else frozenset(codes)
        return self._cached(key).signed_distance_m(lon, lat)


class Coverage:
    """One shift's coverage of its assigned cells: cells visited and distance walked.

    A fix is accepted when its ``ts`` is later than the last accepted fix and
    reaching it from there needs at most ``max_speed_mps``; faster is a GPS
    outlier, and the track resumes from the last accepted fix. Each accepted
    fix adds its great-circle step to :attr:`distance_m` and, if it lies in an
    assigned cell, marks that cell visited.
    """

    def __init__(self, grids: Grids, codes: Iterable[str], *, max_speed_mps: float = 5.0) -> None:
        self.assigned: frozenset[str] = frozenset(codes)
        unknown = grids.unknown(self.assigned)
        if unknown:
            raise ValueError(f"unknown grid codes: {', '.join(unknown)}")
        self.max_speed_mps = max_speed_mps
        self._grids = grids
        self._visited: set[str] = set()
        self._distance_m = 0.0
        self._last: tuple[float, float, float] | None = None

    @property
    def visited(self) -> frozenset[str]:
        """Assigned cells with at least one accepted fix."""
        return frozenset(self._visited)

    @property
    def distance_m(self) -> float:
        """Metres walked between accepted fixes."""
        return self._distance_m

    @property
    def share(self) -> float:
        """Visited / assigned cells, from 0 to 1 (0 when nothing is assigned)."""
        return len(self._visited) / len(self.assigned) if self.assigned else 0.0

    def add(self, lon: float, lat: float, ts: float) -> bool:
        """Take one fix (``ts`` in Unix seconds); ``True`` if it was accepted."""
        if not (math.isfinite(lon) and math.isfinite(lat) and math.isfinite(ts)):
            return False
        if self._last is not None:
            last_lon, last_lat, last_ts = self._last
            step = haversine_m(last_lon, last_lat, lon, lat)
            if ts <= last_ts or step > self.max_speed_mps * (ts - last_ts):
                return False
            self._distance_m += step
        self._last = (lon, lat, ts)
        code = self._grids.cell_at(lon, lat)
        if code in self.assigned:
            self._visited.add(code)
        return True

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able snapshot for :meth:`from_doc`."""
        return {
            "codes": sorted(self.assigned),
            "visited": sorted(self._visited),
            "distance_m": self._distance_m,
            "last": list(self._last) if self._last is not None else None,
            "max_speed_mps": self.max_speed_mps,
        }

    @classmethod
    def from_doc(cls, grids: Grids, doc: Mapping[str, Any]) -> Coverage:
        """Restore a :meth:`to_doc` snapshot; ``ValueError`` if malformed or a code is unknown."""
        try:
            coverage = cls(grids, doc["codes"], max_speed_mps=float(doc["max_speed_mps"]))
            coverage._visited = set(doc["visited"]) & coverage.assigned
            coverage._distance_m = float(doc["distance_m"])
            last = doc["last"]
            if last is not None:
                coverage._last = (float(last[0]), float(last[1]), float(last[2]))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed coverage doc: {exc!r}") from exc
        return coverage
