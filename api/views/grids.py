"""``/api/v1/grids``: the unit grid cells (万米单元网格) as GeoJSON, for the console's map."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from citywatch.api import params
from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError
from citywatch.api.state import GRIDS

MAX_CELLS = 50_000


async def list_grids(request: web.Request, who: Principal, *, grid: str | None) -> web.Response:
    """Cells whose code starts with ``grid`` (default: all the caller may see)."""
    grids = request.app[GRIDS]()
    if grids is None:
        raise ApiError(404, "no grids_file is configured")
    prefix = grid or ""
    features: list[dict[str, Any]] = []
    for code in sorted(grids.codes):
        if not code.startswith(prefix):
            continue
        # A cell's code begins with its district's code, whose first four digits are the city's.
        city = code[:4] + "00"
        if not who.sees(city, code) and not (who.cities and not who.grids and city in who.cities):
            continue
        polygons = [[list(map(list, ring)) for ring in poly] for poly in grids.polygons(code)]
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        features.append({"type": "Feature", "properties": {"code": code}, "geometry": geometry})
        if len(features) > MAX_CELLS:
            raise ApiError(400, f"more than {MAX_CELLS} cells: give a longer grid prefix")
    return params.respond({"type": "FeatureCollection", "features": features})
