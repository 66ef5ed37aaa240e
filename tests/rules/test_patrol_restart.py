"""Patrol state survives a restart: an officer already idle is flagged once, not twice."""

from __future__ import annotations

from pathlib import Path

from citywatch.clock import ManualClock
from citywatch.geo import offset_m
from citywatch.models import Fix, ShiftEvent
from citywatch.rules.patrols.rule import patrol_state
from tests.helpers import Collect
from tests.rules.district import CELL, GRIDS, patrol_rule

T0 = 1_790_000_000.0


def fixes(t0: float, n: int) -> list[Fix]:
    lon, lat = offset_m(*GRIDS.centroid(CELL), 3.0, -2.0)
    return [Fix("321200", "dev-1", t0 + 10 * i, lat, lon, t0 + 10 * i, acc=10.0) for i in range(n)]


async def test_an_idle_officer_is_flagged_once_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    out = Collect()

    start = ShiftEvent("321200", "off-1", T0, "start", T0, "dev-1", (CELL,), "lead-1", "inspector")
    async with patrol_rule(tmp_path, out, clock) as r:
        await r.write([start])
        for f in fixes(T0, 70):
            clock.set(f.received_at)
            await r.write([f])
        assert [e.rule for e in out.events] == ["patrol_idle"]
    async with patrol_rule(tmp_path, out, clock) as r:
        o = r.officer("321200", "off-1")
        assert o is not None and o.device == "dev-1"
        assert patrol_state(r.fleet, o.slot) == "idle" == r.state_of("321200", "off-1")
        for f in fixes(T0 + 700, 10):
            clock.set(f.received_at)
            await r.write([f])
    assert [e.rule for e in out.events] == ["patrol_idle"], "not flagged a second time"
