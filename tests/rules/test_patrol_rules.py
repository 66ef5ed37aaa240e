"""The patrol rules as pure functions over generated tracks, with an injected time."""

from __future__ import annotations

import math
import random

import numpy as np

from citywatch.geo import offset_m
from citywatch.models import AlertEvent, CaseEvent, DeviceStatus, Fix, Heartbeat, ShiftEvent
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.evaluate import evaluate
from citywatch.rules.patrols.fleet import Fleet
from citywatch.rules.patrols.geometry import AssignmentTable
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.patrols.specs import PATROL_RULES, RULE_NAMES
from citywatch.rules.patrols.state import (
    Officer,
    apply_fixes,
    link_sites,
    on_case,
    on_heartbeat,
    on_shift,
    on_status,
    set_thresholds,
)
from citywatch.simulate.grid import make_district

T0 = 1_790_000_000.0
FC = make_district()
GRIDS = Grids.from_geojson(FC)
TABLE = AssignmentTable(GRIDS)
CODES = sorted(GRIDS.codes)
MINE = (CODES[0],)
TH = PatrolsConfig().thresholds("321200", MINE, "inspector")
CENTRE = GRIDS.centroid(MINE[0])


class Patrol:
    """One officer in a fleet of their own: the state the pure rules read and update."""

    def __init__(self) -> None:
        self.f = Fleet(len(PATROL_RULES), capacity=4)
        self.o = Officer("321200", "off-1", "dev-1", MINE, "lead-1", "inspector")
        self.slot = self.o.slot = self.f.alloc()
        self.officers: list[Officer | None] = [None] * self.f.capacity
        self.officers[self.slot] = self.o
        set_thresholds(self.f, self.slot, TH)
        self.f.assign[self.slot] = TABLE.id_of(MINE)

    @property
    def idx(self) -> np.ndarray:
        return np.array([self.slot], dtype=np.intp)

    def firing(self, rule: str) -> float | None:
        i = RULE_NAMES.index(rule)
        if not int(self.f.firing[self.slot]) & (1 << i):
            return None
        return float(self.f.fired_since[self.slot, i])

    @property
    def outside(self) -> bool:
        return bool(self.f.outside[self.slot])

    def shift(self, ev: ShiftEvent) -> None:
        on_shift(self.f, self.slot, ev)

    def fix(self, fix: Fix) -> None:
        a = np.array
        apply_fixes(
            self.f,
            TABLE,
            self.idx,
            a([fix.ts]),
            a([fix.lon]),
            a([fix.lat]),
            a([fix.received_at]),
            a([math.nan if fix.acc is None else fix.acc]),
        )

    def case(self, ev: CaseEvent) -> None:
        on_case(self.o, ev)
        link_sites(self.f, self.o)

    def evaluate(self, now: float) -> list[AlertEvent]:
        return [e for _, e in evaluate(self.f, self.officers, self.idx, now)]


def start(t: float = T0) -> Patrol:
    p = Patrol()
    p.shift(ShiftEvent("321200", "off-1", t, "start", t, "dev-1", MINE, "lead-1", "inspector"))
    return p


def feed(
    p: Patrol, pts: list[tuple[float, float, float]], acc: float = 10.0, lag: float = 1.0
) -> list[str]:
    """Feed fixes (ts, east m, north m from the cell centre); the events fired, as 'rule:status'."""
    out = []
    for ts, east, north in pts:
        lon, lat = offset_m(*CENTRE, east, north)
        p.fix(Fix("321200", "dev-1", ts, lat, lon, ts + lag, acc=acc))
        out += [f"{e.rule}:{e.status}" for e in p.evaluate(ts + lag)]
    return out


def drift(
    seconds: int, spread: float, seed: int = 1, t: float = T0
) -> list[tuple[float, float, float]]:
    rnd = random.Random(seed)
    return [
        (t + s, rnd.uniform(-spread, spread), rnd.uniform(-spread, spread))
        for s in range(0, seconds, 10)
    ]


def test_drift_around_a_fixed_point_is_idle() -> None:
    p = start()
    events = feed(p, drift(11 * 60, 30.0), acc=20.0)
    assert events == ["patrol_idle:firing"]
    assert p.firing("patrol_idle") <= T0 + 60


def test_a_slow_walk_is_not_idle() -> None:
    p = start()
    walk = [(T0 + s, -45 + 0.5 * s, 0.0) for s in range(0, 15 * 60, 10)]  # 0.5 m/s
    assert "patrol_idle:firing" not in feed(p, walk)


def test_inaccurate_fixes_do_not_count_as_movement() -> None:
    p = start()
    events = feed(p, drift(11 * 60, 20.0), acc=20.0)
    jumps = [(T0 + 11 * 60 + s, 300.0 * math.cos(s), 0.0) for s in range(10, 60, 10)]
    events += feed(p, jumps, acc=200.0)
    assert events == ["patrol_idle:firing"]


def test_standing_at_ones_own_case_site_is_work() -> None:
    p = start()
    site_lon, site_lat = CENTRE
    p.case(
        CaseEvent(
            "321200", "C1", T0, "dispatched", T0, lat=site_lat, lon=site_lon, officer="off-1"
        ),
    )
    assert feed(p, drift(11 * 60, 10.0)) == []
    p.case(CaseEvent("321200", "C1", T0 + 700, "resolved", T0 + 700))
    assert feed(p, drift(60, 10.0, t=T0 + 11 * 60)) == ["patrol_idle:firing"]


def test_zig_zag_along_the_border_does_not_flap() -> None:
    p = start()
    east_edge = 50.0  # the cell is about 100 m wide, centred on CENTRE
    pts = [(T0 + s, east_edge + (15 if (s // 10) % 2 else -15), 0.0) for s in range(0, 20 * 60, 10)]
    events = feed(p, pts)
    assert [e for e in events if "out_of_grid" in e] == []


def test_out_of_grid_is_a_state_with_hysteresis() -> None:
    p = start()
    outside = [
        (T0 + s, 200.0 + (s % 30), 0.0) for s in range(0, 6 * 60, 10)
    ]  # never crossed in view
    assert feed(p, outside) == ["patrol_out_of_grid:firing"]
    assert p.firing("patrol_out_of_grid") == T0
    # Back to the edge (within the buffer): still out; well inside: resolved.
    assert feed(p, [(T0 + 400, 40.0, 0.0)]) == []
    assert feed(p, [(T0 + 410, 0.0, 0.0)]) == ["patrol_out_of_grid:resolved"]


def test_a_buffered_batch_of_old_fixes_does_not_fire_or_clear_wrongly() -> None:
    p = start()
    events = feed(p, [(T0 + s, 0.0, 0.0) for s in range(0, 120, 10)])
    # The handheld uploads fixes from earlier, taken outside the grid: they are history.
    events += feed(p, [(T0 - 600 + s, 500.0, 0.0) for s in range(0, 400, 10)], lag=700.0)
    assert events == []
    assert not p.outside


def test_breaks_and_shift_ends_stop_the_rules() -> None:
    p = start()
    assert feed(p, drift(11 * 60, 10.0)) == ["patrol_idle:firing"]
    t = T0 + 11 * 60 + 5
    p.shift(ShiftEvent("321200", "off-1", t, "break_start", t))
    assert [f"{e.rule}:{e.status}" for e in p.evaluate(t)] == ["patrol_idle:resolved"]
    assert p.evaluate(t + 3600) == [], "no offline or GPS lost on a break"
    p.shift(ShiftEvent("321200", "off-1", t + 3600, "break_end", t + 3600))
    assert p.evaluate(t + 3600 + 60) == []
    p.shift(ShiftEvent("321200", "off-1", t + 3700, "end", t + 3700))
    assert p.evaluate(t + 99_999) == []


def test_heartbeats_without_fixes_are_gps_lost_and_silence_is_offline() -> None:
    p = start()
    feed(p, [(T0, 0.0, 0.0)])
    fired = []
    for s in range(30, 6 * 60, 30):
        on_heartbeat(p.f, p.slot, Heartbeat("321200", "dev-1", T0 + s, T0 + s, gps=False))
        fired += [f"{e.rule}:{e.status}" for e in p.evaluate(T0 + s)]
    assert fired == ["patrol_gps_lost:firing"]
    later = T0 + 6 * 60 + 180
    assert [f"{e.rule}:{e.status}" for e in p.evaluate(later)] == [
        "patrol_gps_lost:resolved",
        "device_offline:firing",
    ]
    on_heartbeat(p.f, p.slot, Heartbeat("321200", "dev-1", later + 5, later + 5))
    assert "device_offline:resolved" in [f"{e.rule}:{e.status}" for e in p.evaluate(later + 5)]


def test_a_retained_offline_status_is_offline_at_once() -> None:
    p = start()
    on_status(p.f, p.slot, DeviceStatus("321200", "dev-1", False, T0 + 1, T0 + 1, retained=True))
    (ev,) = p.evaluate(T0 + 1)
    assert ev.rule == "device_offline" and ev.labels["lead"] == "lead-1"
