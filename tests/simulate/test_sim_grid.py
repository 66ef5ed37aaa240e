"""The synthetic district's unit-grid cells."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import orjson
import pytest

from citywatch.geo import haversine_m
from citywatch.simulate import cell_index, make_district, write_geojson


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring)) / 2


def test_default_district_has_324_square_cells_of_100_m() -> None:
    fc = make_district()
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == 324
    for feature in fc["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        ring = feature["geometry"]["coordinates"][0]
        assert len(ring) == 5
        assert ring[0] == ring[-1], "ring must be closed"
        assert _signed_area(ring) > 0, "ring must be counter-clockwise"
        (w, s), (e, _), (_, n) = ring[0], ring[1], ring[2]
        assert haversine_m(w, s, e, s) == pytest.approx(100.0, abs=0.5)
        assert haversine_m(w, s, w, n) == pytest.approx(100.0, abs=0.5)


def test_codes_are_unique_15_digits_and_nested() -> None:
    fc = make_district()
    codes = [f["properties"]["code"] for f in fc["features"]]
    assert len(set(codes)) == len(codes)
    for feature in fc["features"]:
        props = feature["properties"]
        assert re.fullmatch(r"321202\d{9}", props["code"])
        assert props["code"].startswith(props["community"])
        assert props["community"].startswith(props["street"])
        assert len(props["street"]) == 9 and len(props["community"]) == 12
        assert re.fullmatch(r"海陵区-街道\d-社区\d-\d{3}", props["name"])
    assert "321202001002017" in codes
    assert len({f["properties"]["community"] for f in fc["features"]}) == 9


def test_district_is_about_1_8_km_square_around_the_centre() -> None:
    boxes = cell_index(make_district()).values()
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    assert haversine_m(w, s, e, s) == pytest.approx(1800, abs=2)
    assert haversine_m(w, s, w, n) == pytest.approx(1800, abs=2)
    assert (w + e) / 2 == pytest.approx(119.92, abs=1e-6)
    assert (s + n) / 2 == pytest.approx(32.45, abs=1e-6)


def test_cells_tile_without_gaps_or_overlaps() -> None:
    boxes = sorted(cell_index(make_district()).values())
    total = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    assert total == pytest.approx((e - w) * (n - s), rel=1e-6)


def test_cell_index_maps_codes_to_bboxes() -> None:
    fc = make_district(streets=1, communities=2, cells=2)
    index = cell_index(fc)
    assert sorted(index) == [f"321202001{c:03d}{k:03d}" for c in (1, 2) for k in range(1, 5)]
    for min_lon, min_lat, max_lon, max_lat in index.values():
        assert min_lon < max_lon and min_lat < max_lat


def test_write_geojson_round_trips(tmp_path: Path) -> None:
    fc = make_district(streets=1, communities=1, cells=2)
    path = tmp_path / "out" / "grids.geojson"
    write_geojson(fc, path)
    assert orjson.loads(path.read_bytes()) == fc
    assert "海陵区".encode() in path.read_bytes()


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        make_district(admin="3212")
    with pytest.raises(ValueError):
        make_district(cells=40)
