"""Unit grid cells: point location, signed distance to assigned cells, loading, coverage."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import citywatch.rules.patrols.grids as grids_module
from citywatch.geo import offset_m
from citywatch.rules.patrols.grids import Assignment, Coverage, Grids
from citywatch.simulate.grid import TAIZHOU_CENTER, make_district

# make_district() is 18 x 18 cells of 100 m centred on TAIZHOU_CENTER, so in metres east and
# north of the centre, lattice square (i, j) = (col - 9, row - 9) spans
# [100 i, 100 (i + 1)] x [100 j, 100 (j + 1)].
HALF = 9
TOL_M = 0.05  # the district's corners are rounded to 1e-7 degrees, about 1 cm


def code(i: int, j: int) -> str:
    """Code of lattice square (i, j) in make_district()."""
    row, col = j + HALF, i + HALF
    k = (row % 6) * 6 + col % 6
    return f"321202{row // 6 + 1:03d}{col // 6 + 1:03d}{k + 1:03d}"


def at(x: float, y: float) -> tuple[float, float]:
    """(lon, lat) of the point x metres east and y metres north of the district's centre."""
    return offset_m(*TAIZHOU_CENTER, x, y)


def square_distance(i: int, j: int, x: float, y: float) -> float:
    dx = max(100 * i - x, 0.0, x - 100 * (i + 1))
    dy = max(100 * j - y, 0.0, y - 100 * (j + 1))
    return math.hypot(dx, dy)


def lattice_reference(squares: set[tuple[int, int]], x: float, y: float) -> float:
    """Signed distance to a union of lattice squares: outside, to the nearest square;
    inside, minus the distance to the nearest square not in the union."""
    if (math.floor(x / 100), math.floor(y / 100)) not in squares:
        return min(square_distance(i, j, x, y) for i, j in squares)
    i0, i1 = min(i for i, _ in squares) - 1, max(i for i, _ in squares) + 1
    j0, j1 = min(j for _, j in squares) - 1, max(j for _, j in squares) + 1
    return -min(
        square_distance(i, j, x, y)
        for i in range(i0, i1 + 1)
        for j in range(j0, j1 + 1)
        if (i, j) not in squares
    )


def polygon_reference(ring: list[tuple[float, float]], x: float, y: float) -> float:
    """Signed distance to one simple polygon in metres, by brute force."""
    inside, best = False, math.inf
    for (ax, ay), (bx, by) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
        t = ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
        t = min(1.0, max(0.0, t))
        best = min(best, math.hypot(x - ax - t * (bx - ax), y - ay - t * (by - ay)))
    return -best if inside else best


def feature(cell: str, rings: list[list[tuple[float, float]]]) -> dict[str, Any]:
    coordinates = [[list(p) for p in ring + ring[:1]] for ring in rings]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": coordinates},
        "properties": {"code": cell},
    }


def metres_polygon(cell: str, ring: Sequence[tuple[float, float]]) -> dict[str, Any]:
    return feature(cell, [[at(x, y) for x, y in ring]])


@pytest.fixture(scope="module")
def district() -> dict[str, Any]:
    return make_district()


@pytest.fixture(scope="module")
def grids(district: dict[str, Any]) -> Grids:
    return Grids.from_geojson(district)


def test_every_centroid_maps_to_its_own_cell(grids: Grids) -> None:
    assert len(grids.codes) == 324
    for cell in grids.codes:
        assert grids.cell_at(*grids.centroid(cell)) == cell
    assert grids.centroid(code(0, 0)) == pytest.approx(at(50, 50), abs=1e-6)


def test_points_just_outside_the_district_are_in_no_cell(grids: Grids) -> None:
    west, south, east, north = grids.bounds
    lon, lat = TAIZHOU_CENTER
    eps = 1e-6  # about 10 cm
    for point in [
        (west - eps, lat),
        (east + eps, lat),
        (lon, south - eps),
        (lon, north + eps),
        (west - eps, south - eps),
        (east + eps, north + eps),
    ]:
        assert grids.cell_at(*point) is None
    assert grids.cell_at(west + eps, lat) is not None
    assert grids.cell_at(east - eps, north - eps) is not None


def test_api_basics(grids: Grids) -> None:
    assert code(0, 0) in grids and "321202999999999" not in grids
    assert grids.unknown([code(0, 0), "b", "a", "b"]) == ["a", "b"]
    assert grids.bounds[0] < TAIZHOU_CENTER[0] < grids.bounds[2]
    with pytest.raises(KeyError):
        grids.centroid("nope")
    with pytest.raises(ValueError, match="unknown grid codes: nope"):
        grids.signed_distance_m([code(0, 0), "nope"], *TAIZHOU_CENTER)
    assert grids.signed_distance_m([], *TAIZHOU_CENTER) == math.inf


def test_single_cell_centre_is_50_m_inside(grids: Grids) -> None:
    assert grids.signed_distance_m([code(2, -3)], *at(250, -250)) == pytest.approx(-50, abs=TOL_M)
    assert grids.signed_distance_m([code(2, -3)], *at(210, -230)) == pytest.approx(-10, abs=TOL_M)


def test_east_of_a_block_of_four(grids: Grids) -> None:
    block = [code(0, 0), code(1, 0), code(0, 1), code(1, 1)]
    assert grids.signed_distance_m(block, *at(230, 100)) == pytest.approx(30, abs=TOL_M)
    assert grids.signed_distance_m(block, *at(100, 100)) == pytest.approx(-100, abs=TOL_M)


def test_point_on_a_shared_edge_is_inside(grids: Grids, district: dict[str, Any]) -> None:
    west, east = code(0, 0), code(1, 0)
    ring = next(f for f in district["features"] if f["properties"]["code"] == west)
    edge_lon = max(p[0] for p in ring["geometry"]["coordinates"][0])
    lon, lat = edge_lon, at(0, 50)[1]
    assert grids.signed_distance_m([west, east], lon, lat) == pytest.approx(-50, abs=TOL_M)
    assert grids.signed_distance_m([west], lon, lat) == pytest.approx(0, abs=TOL_M)
    assert grids.cell_at(lon, lat) == east  # half-open: a shared edge belongs to one cell


def test_l_shape_inner_corner(grids: Grids) -> None:
    # Squares (0, 0), (1, 0), (0, 1); (1, 1) is missing, so (100, 100) is the concave corner.
    ell = frozenset({code(0, 0), code(1, 0), code(0, 1)})
    assert grids.signed_distance_m(ell, *at(120, 130)) == pytest.approx(20, abs=TOL_M)
    assert grids.signed_distance_m(ell, *at(105, 105)) == pytest.approx(5, abs=TOL_M)
    assert grids.signed_distance_m(ell, *at(90, 85)) == pytest.approx(
        -math.hypot(10, 15), abs=TOL_M
    )
    assert grids.signed_distance_m(ell, *at(230, -40)) == pytest.approx(50, abs=TOL_M)  # convex


@pytest.mark.parametrize("seed", range(6))
def test_random_assignments_match_the_lattice_reference(grids: Grids, seed: int) -> None:
    rng = random.Random(seed)
    i0, j0 = rng.randrange(-9, 3), rng.randrange(-9, 3)
    window = [(i, j) for i in range(i0, i0 + 6) for j in range(j0, j0 + 6)]
    for _ in range(10):
        squares = set(rng.sample(window, rng.randint(1, 12)))
        cells = [code(i, j) for i, j in squares]
        for _ in range(60):
            x = rng.uniform(100 * i0 - 250, 100 * i0 + 850)
            y = rng.uniform(100 * j0 - 250, 100 * j0 + 850)
            if rng.random() < 0.3:
                x, y = round(x / 25) * 25.0, round(y / 25) * 25.0  # bucket and cell boundaries
            got, want = grids.signed_distance_m(cells, *at(x, y)), lattice_reference(squares, x, y)
            assert got == pytest.approx(want, abs=TOL_M) or abs(want) < TOL_M, (squares, x, y)


def test_far_points_with_many_edges(grids: Grids) -> None:
    squares = {(i, j) for i in range(-8, 0) for j in range(-8, 0) if (i + j) % 2 == 0}
    cells = frozenset(code(i, j) for i, j in squares)
    assert len(grids.assignment(cells).edges) == 4 * len(squares) >= grids_module._NUMPY_EDGES
    for x, y in [(500, 500), (-1500, 0), (-450, -950), (-350, -350)]:
        want = lattice_reference(squares, x, y)
        assert grids.signed_distance_m(cells, *at(x, y)) == pytest.approx(want, abs=TOL_M)


def test_hand_made_concave_polygons() -> None:
    u_shape = [(0, 0), (90, 0), (90, 80), (60, 80), (60, 30), (30, 30), (30, 80), (0, 80)]
    dart = [(200, 0), (300, 40), (200, 100), (230, 45)]
    g = Grids.from_geojson(
        {
            "type": "FeatureCollection",
            "features": [metres_polygon("u", u_shape), metres_polygon("dart", dart)],
        }
    )
    assert g.signed_distance_m(["u"], *at(45, 60)) == pytest.approx(15, abs=0.01)  # in the notch
    assert g.signed_distance_m(["u"], *at(45, 20)) == pytest.approx(-10, abs=0.01)
    assert g.signed_distance_m(["u"], *at(15, 70)) == pytest.approx(-10, abs=0.01)
    assert g.cell_at(*at(45, 60)) is None and g.cell_at(*at(15, 70)) == "u"
    for name, ring in [("u", u_shape), ("dart", dart)]:
        ring_m = [(float(x), float(y)) for x, y in ring]
        for x in range(-60, 360, 5):  # 5 m steps hit vertices and run rays through them
            for y in range(-60, 160, 5):
                want = polygon_reference(ring_m, x, y)
                got = g.signed_distance_m([name], *at(x, y))
                assert got == pytest.approx(want, abs=0.01) or abs(want) < 1e-6, (name, x, y)
                if abs(want) > 0.01:
                    assert (g.cell_at(*at(x, y)) == name) == (want < 0), (name, x, y)


def test_shared_diagonal_in_either_direction_and_holes() -> None:
    lower = [(0, 0), (100, 0), (100, 100)]
    upper = [(0, 0), (0, 100), (100, 100)]  # clockwise: the shared edge runs the same way
    square = [(300, 0), (400, 0), (400, 100), (300, 100)]
    hole = [(330, 30), (330, 70), (370, 70), (370, 30)]
    g = Grids.from_geojson(
        {
            "type": "FeatureCollection",
            "features": [
                metres_polygon("lower", lower),
                metres_polygon("upper", upper),
                feature("holed", [[at(x, y) for x, y in square], [at(x, y) for x, y in hole]]),
            ],
        }
    )
    pair = ["lower", "upper"]
    assert g.signed_distance_m(pair, *at(50, 50)) == pytest.approx(-50, abs=0.01)
    assert g.signed_distance_m(["lower"], *at(50, 50)) == pytest.approx(0, abs=0.01)
    assert g.signed_distance_m(["holed"], *at(350, 50)) == pytest.approx(20, abs=0.01)
    assert g.signed_distance_m(["holed"], *at(315, 50)) == pytest.approx(-15, abs=0.01)
    assert g.cell_at(*at(350, 50)) is None and g.cell_at(*at(315, 50)) == "holed"
    assert g.centroid("holed") == pytest.approx(at(350, 50), abs=1e-7)


def test_multipolygon_cell() -> None:
    parts = [[[at(0, 0), at(10, 0), at(10, 10), at(0, 10), at(0, 0)]]]
    parts.append([[at(50, 0), at(60, 0), at(60, 10), at(50, 10), at(50, 0)]])
    g = Grids.from_geojson(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "MultiPolygon", "coordinates": parts},
                    "properties": {"code": "m"},
                }
            ],
        }
    )
    assert g.cell_at(*at(5, 5)) == "m" and g.cell_at(*at(55, 5)) == "m"
    assert g.cell_at(*at(30, 5)) is None
    assert g.signed_distance_m(["m"], *at(30, 5)) == pytest.approx(20, abs=0.01)
    assert g.centroid("m") == pytest.approx(at(30, 5), abs=1e-7)


def test_assignments_are_cached(district: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[frozenset[str]] = []

    class Counting(Assignment):
        def __init__(self, codes: frozenset[str], polygons: Any) -> None:
            built.append(codes)
            super().__init__(codes, polygons)

    monkeypatch.setattr(grids_module, "Assignment", Counting)
    g = Grids.from_geojson(district, cache_size=2)
    block = [code(0, 0), code(1, 0), code(0, 1)]
    first = g.assignment(block)
    for k in range(50):
        g.signed_distance_m(block[k % 3 :] + block[: k % 3], *at(k, k))
    assert g.assignment(frozenset(block)) is first and g.assignment(reversed(block)) is first
    assert len(built) == 1
    assert not first.edges.flags.writeable and first.edges.shape == (8, 4)
    g.assignment([code(5, 5)])
    g.assignment([code(6, 6)])
    assert g.assignment(block) is not first  # evicted: the cache is bounded
    assert len(built) == 4


def write(tmp_path: Path, content: str | dict[str, Any]) -> Path:
    path = tmp_path / "grids.geojson"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def three_cells(district: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": json.loads(json.dumps(district["features"][:3])),
    }


def test_load_reads_a_file(tmp_path: Path, district: dict[str, Any]) -> None:
    g = Grids.load(write(tmp_path, district))
    assert g.codes == frozenset(f["properties"]["code"] for f in district["features"])
    path = tmp_path / "bom.geojson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(three_cells(district)).encode())
    assert len(Grids.load(path).codes) == 3


def _no_code(fc: dict[str, Any]) -> None:
    fc["features"][1]["properties"]["code"] = 321202001001002


def _point(fc: dict[str, Any]) -> None:
    fc["features"][1]["geometry"] = {"type": "Point", "coordinates": [119.9, 32.4]}


def _short_ring(fc: dict[str, Any]) -> None:
    ring = fc["features"][1]["geometry"]["coordinates"][0]
    del ring[1:3]


def _nan(fc: dict[str, Any]) -> None:
    fc["features"][1]["geometry"]["coordinates"][0][2][1] = math.nan


def _duplicate(fc: dict[str, Any]) -> None:
    fc["features"][2]["properties"]["code"] = fc["features"][0]["properties"]["code"]


@pytest.mark.parametrize(
    ("corrupt", "index", "message"),
    [
        (_no_code, 1, "no string property 'code'"),
        (_point, 1, "geometry must be Polygon or MultiPolygon, got 'Point'"),
        (_short_ring, 1, "ring of 3 positions"),
        (_nan, 1, "non-finite coordinates"),
        (_duplicate, 2, "duplicate code, first at feature 0"),
    ],
)
def test_load_names_the_file_and_the_bad_feature(
    tmp_path: Path, district: dict[str, Any], corrupt: Any, index: int, message: str
) -> None:
    fc = three_cells(district)
    corrupt(fc)
    path = write(tmp_path, fc)
    with pytest.raises(ValueError, match=message) as info:
        Grids.load(path)
    assert str(info.value).startswith(f"{path}: feature {index}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ({"type": "Feature", "features": []}, "not a GeoJSON FeatureCollection"),
        ({"type": "FeatureCollection"}, "not a GeoJSON FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "no grid cells"),
    ],
)
def test_load_rejects_bad_files(
    tmp_path: Path, content: str | dict[str, Any], message: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ValueError, match=message) as info:
        Grids.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_reports_an_unreadable_file(tmp_path: Path) -> None:
    for path in [tmp_path / "missing.geojson", tmp_path]:
        with pytest.raises(ValueError, match="cannot read grids file") as info:
            Grids.load(path)
        assert str(info.value).startswith(f"{path}: ")


T0 = 1_790_000_000.0
BLOCK = [code(0, 0), code(1, 0), code(0, 1), code(1, 1)]


def test_coverage_share_of_visited_cells(grids: Grids) -> None:
    cov = Coverage(grids, BLOCK)
    for k, (x, y) in enumerate([(50, 50), (150, 50), (150, 150), (150, 250), (160, 160)]):
        assert cov.add(*at(x, y), T0 + 60 * k)
    # (150, 250) lies in a cell that is not assigned, so it is accepted but visits nothing.
    assert cov.visited == {code(0, 0), code(1, 0), code(1, 1)}
    assert cov.share == 0.75
    assert cov.assigned == frozenset(BLOCK)
    with pytest.raises(ValueError, match="unknown grid codes: x"):
        Coverage(grids, ["x", code(0, 0)])
    assert Coverage(grids, []).share == 0.0


def walk(cov: Coverage, start_x: float, metres: int, t0: float) -> float:
    """Walk east from (start_x, 50) at 1.25 m/s, a fix every 5 m; return the last ts."""
    ts = t0
    for k in range(metres // 5 + 1):
        ts = t0 + 4 * k
        assert cov.add(*at(start_x + 5 * k, 50.0), ts)
    return ts


def test_coverage_distance_of_a_straight_walk(grids: Grids) -> None:
    cov = Coverage(grids, BLOCK)
    walk(cov, -10.0, 200, T0)
    assert cov.distance_m == pytest.approx(200, rel=0.01)
    assert cov.visited == {code(0, 0), code(1, 0)}  # the walk starts in an unassigned cell


def test_coverage_ignores_outliers_and_out_of_order_fixes(grids: Grids) -> None:
    cov = Coverage(grids, BLOCK)
    ts = walk(cov, 0.0, 95, T0)
    before = cov.distance_m
    assert not cov.add(*at(1095.0, 50.0), ts + 10)  # 1 km in 10 s
    assert not cov.add(*at(60.0, 50.0), ts)  # same ts as the last accepted fix
    assert not cov.add(*at(60.0, 50.0), ts - 30)  # older
    assert not cov.add(math.nan, 32.45, ts + 20)
    assert cov.distance_m == before and cov.visited == {code(0, 0)}
    assert cov.add(*at(105.0, 50.0), ts + 20)  # resumes from the last good fix at x = 95
    assert cov.distance_m == pytest.approx(before + 10, abs=0.01)
    assert cov.visited == {code(0, 0), code(1, 0)}


def test_coverage_round_trips_through_a_doc(grids: Grids) -> None:
    cov = Coverage(grids, BLOCK, max_speed_mps=3.0)
    ts = walk(cov, 20.0, 140, T0)  # ends at (160, 50)
    doc = json.loads(json.dumps(cov.to_doc()))
    back = Coverage.from_doc(grids, doc)
    assert (back.assigned, back.visited, back.share) == (cov.assigned, cov.visited, cov.share)
    assert back.distance_m == cov.distance_m and back.max_speed_mps == 3.0
    for c in (cov, back):  # the last fix is restored, so both continue alike
        assert c.add(*at(160.0, 150.0), ts + 60)
        assert not c.add(*at(900.0, 150.0), ts + 70)
    assert back.to_doc() == cov.to_doc()
    assert Coverage.from_doc(grids, Coverage(grids, BLOCK).to_doc()).to_doc()["last"] is None
    with pytest.raises(ValueError, match="malformed coverage doc"):
        Coverage.from_doc(grids, {"codes": BLOCK})


def test_speed(grids: Grids) -> None:
    rng = random.Random(7)
    figures = []
    for side in (1, 2, 3):
        cells = frozenset(code(i, j) for i in range(side) for j in range(side))
        lo, hi = -60, 100 * side + 60  # inside and around the assignment
        points = [at(rng.uniform(lo, hi), rng.uniform(lo, hi)) for _ in range(1000)]
        start = time.perf_counter()
        for _ in range(20):
            for lon, lat in points:
                grids.signed_distance_m(cells, lon, lat)
        us = (time.perf_counter() - start) / 20_000 * 1e6
        figures.append(f"signed_distance_m, {side * side} cells: {us:.2f} us")
        assert us < 50
    west, south, east, north = grids.bounds
    points = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(1000)]
    start = time.perf_counter()
    for _ in range(20):
        for lon, lat in points:
            grids.cell_at(lon, lat)
    us = (time.perf_counter() - start) / 20_000 * 1e6
    figures.append(f"cell_at: {us:.2f} us")
    assert us < 50
    print("; ".join(figures))
