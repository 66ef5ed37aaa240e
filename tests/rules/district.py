"""The simulated district the patrol rule tests walk in, and the cell they patrol."""

from __future__ import annotations

from citywatch.rules.patrols.grids import Grids
from citywatch.simulate.grid import make_district

GRIDS = Grids.from_geojson(make_district())
CELL = sorted(GRIDS.codes)[0]
