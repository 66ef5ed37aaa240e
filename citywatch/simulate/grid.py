"""A synthetic district of 万米单元网格 (unit grid cells of about 100 m x 100 m).

Digital city management divides a district into streets (街道), streets into
communities (社区) and communities into unit cells, each with a 15-digit code:
6 digits of administrative division, 3 of street, 3 of community, 3 of cell.
:func:`make_district` lays such a district out as a GeoJSON FeatureCollection
(WGS-84) around a centre point; streets are rows of community blocks from
south to north, communities run west to east inside a street.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from citywatch.geo import offset_m

Bbox = tuple[float, float, float, float]
"""(min_lon, min_lat, max_lon, max_lat) in WGS-84 degrees."""

TAIZHOU_CENTER = (119.92, 32.45)
"""(lon, lat) of the synthetic district's centre, in Taizhou, Jiangsu."""


def make_district(
    *,
    center: tuple[float, float] = TAIZHOU_CENTER,
    admin: str = "321202",
    district_name: str = "海陵区",
    streets: int = 3,
    communities: int = 3,
    cells: int = 6,
    cell_m: float = 100.0,
) -> dict[str, Any]:
    """Build the district as a GeoJSON FeatureCollection of square Polygon cells.

    ``center`` is (lon, lat); each street holds ``communities`` blocks of
    ``cells`` x ``cells`` cells of ``cell_m`` metres, so the defaults give 324
    cells covering about 1.8 km x 1.8 km. Rings are closed and
    counter-clockwise. Each feature's properties are ``code`` (15 digits),
    ``street`` (9 digits), ``community`` (12 digits) and ``name``.
    """
    if len(admin) != 6 or not admin.isdigit():
        raise ValueError(f"admin must be a 6-digit division code, got {admin!r}")
    if not (1 <= streets <= 999 and 1 <= communities <= 999 and 1 <= cells * cells <= 999):
        raise ValueError("streets, communities and cells per community must fit in 3 digits")
    if cell_m <= 0:
        raise ValueError(f"cell_m must be positive, got {cell_m}")
    lon0, lat0 = center
    cols, rows = communities * cells, streets * cells
    # Shared edges come from one list of values so neighbouring cells meet exactly.
    lons = [
        round(offset_m(lon0, lat0, (c - cols / 2) * cell_m, 0.0)[0], 7) for c in range(cols + 1)
    ]
    lats = [
        round(offset_m(lon0, lat0, 0.0, (r - rows / 2) * cell_m)[1], 7) for r in range(rows + 1)
    ]
    features: list[dict[str, Any]] = []
    for s in range(streets):
        for m in range(communities):
            street = f"{admin}{s + 1:03d}"
            community = f"{street}{m + 1:03d}"
            for k in range(cells * cells):
                row, col = s * cells + k // cells, m * cells + k % cells
                w, e, south, n = lons[col], lons[col + 1], lats[row], lats[row + 1]
                code = f"{community}{k + 1:03d}"
                features.append(
                    {
                        "type": "Feature",
                        "id": code,
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[w, south], [e, south], [e, n], [w, n], [w, south]]],
                        },
                        "properties": {
                            "code": code,
                            "street": street,
                            "community": community,
                            "name": f"{district_name}-街道{s + 1}-社区{m + 1}-{k + 1:03d}",
                        },
                    }
                )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(fc: Mapping[str, Any], path: str | Path) -> None:
    """Write ``fc`` to ``path`` as UTF-8 GeoJSON, creating parent directories."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(fc, option=orjson.OPT_INDENT_2) + b"\n")


def cell_index(fc: Mapping[str, Any]) -> dict[str, Bbox]:
    """Map each cell code to its bounding box (min_lon, min_lat, max_lon, max_lat)."""
    index: dict[str, Bbox] = {}
    for feature in fc["features"]:
        ring = feature["geometry"]["coordinates"][0]
        xs = [float(p[0]) for p in ring]
        ys = [float(p[1]) for p in ring]
        index[str(feature["properties"]["code"])] = (min(xs), min(ys), max(xs), max(ys))
    return index
