"""The simulated district the patrol rule tests walk in, the cell they patrol, and the rule."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from citywatch.clock import ManualClock
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.patrols.metrics import PatrolMetrics
from citywatch.rules.patrols.rule import PatrolRule
from citywatch.simulate.grid import make_district
from tests.helpers import Collect

GRIDS = Grids.from_geojson(make_district())
CELL = sorted(GRIDS.codes)[0]


def patrol_rule(
    tmp_path: Path, out: Collect, clock: ManualClock, cfg: PatrolsConfig | None = None
) -> PatrolRule:
    """The patrol rule on this district, its store in ``tmp_path``, its alerts into ``out``."""
    return PatrolRule(
        cfg or PatrolsConfig(),
        GRIDS,
        tmp_path / "patrols.sqlite",
        out,
        None,
        PatrolMetrics(CollectorRegistry()),
        clock,
    )
