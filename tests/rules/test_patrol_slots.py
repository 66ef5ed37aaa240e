"""The patrol rule's slots: reuse after a shift ends, a version 1 store, live reconfiguration."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from citywatch.clock import ManualClock
from citywatch.geo import offset_m
from citywatch.models import CaseEvent, Fix, ShiftEvent
from citywatch.rules.patrols.config import IdleConfig, PatrolsConfig
from citywatch.rules.patrols.rule import PatrolRule
from tests.helpers import Collect
from tests.rules.district import CELL, GRIDS, patrol_rule

T0 = 1_790_000_000.0
CITY = "321200"


def shift(officer: str, device: str, action: str, t: float) -> ShiftEvent:
    if action != "start":
        return ShiftEvent(CITY, officer, t, action, t)
    return ShiftEvent(CITY, officer, t, "start", t, device, (CELL,), "lead-1", "inspector")


def fixes(device: str, t0: float, n: int, east: float = 3.0) -> list[Fix]:
    lon, lat = offset_m(*GRIDS.centroid(CELL), east, -2.0)
    return [Fix(CITY, device, t0 + 10 * i, lat, lon, t0 + 10 * i, acc=10.0) for i in range(n)]


async def feed(r: PatrolRule, clock: ManualClock, records: Sequence[Fix]) -> None:
    for f in records:
        clock.set(f.received_at)
        await r.write([f])


async def test_a_slot_is_reused_after_a_shift_ends(tmp_path: Path) -> None:
    clock, out = ManualClock(T0), Collect()
    async with patrol_rule(tmp_path, out, clock) as r:
        await r.write([shift("off-1", "dev-1", "start", T0)])
        await feed(r, clock, fixes("dev-1", T0, 70))
        assert [e.rule for e in out.events] == ["patrol_idle"]
        a = r.officer(CITY, "off-1")
        assert a is not None
        slot = a.slot
        t = clock.now() + 1
        await r.write([shift("off-1", "dev-1", "end", t)])
        assert [(e.rule, e.status) for e in out.events][-1] == ("patrol_idle", "resolved")
        assert r.officer(CITY, "off-1") is None and len(r.fleet) == 0
        await r.write([shift("off-2", "dev-2", "start", t)])
        b = r.officer(CITY, "off-2")
        assert b is not None and b.slot == slot, "the freed slot is taken again"
        f = r.fleet
        assert int(f.count[slot]) == 0 and f.firing[slot] == 0 and f.distance[slot] == 0
        n = len(out.events)
        await feed(r, clock, fixes("dev-1", t + 10, 5))  # the old handheld: nobody's now
        await feed(r, clock, fixes("dev-2", t + 10, 5))
        assert len(out.events) == n and r.state_of(CITY, "off-2") == "patrolling"
    with sqlite3.connect(tmp_path / "patrols.sqlite") as db:
        rows = db.execute("SELECT officer FROM officers").fetchall()
    assert rows == [("off-2",)], "the ended shift's row is gone"


async def test_an_officer_with_open_case_sites_is_kept_off_shift(tmp_path: Path) -> None:
    clock, out = ManualClock(T0), Collect()
    lon, lat = GRIDS.centroid(CELL)
    site = CaseEvent(CITY, "C1", T0, "dispatched", T0, lat=lat, lon=lon, officer="off-1")
    async with patrol_rule(tmp_path, out, clock) as r:
        await r.write([shift("off-1", "dev-1", "start", T0), site])
        await r.write([shift("off-1", "dev-1", "end", T0 + 5)])
        o = r.officer(CITY, "off-1")
        assert o is not None and o.slot == -1 and o.sites is not None
    async with patrol_rule(tmp_path, out, clock) as r:
        o = r.officer(CITY, "off-1")
        assert o is not None and o.sites == {"C1": (lon, lat)}
        await r.write([shift("off-1", "dev-1", "start", T0 + 60)])
        await feed(r, clock, fixes("dev-1", T0 + 60, 70, east=0.0))
        assert out.events == [], "standing at one's own case site is work"
        await r.write([CaseEvent(CITY, "C1", T0 + 800, "resolved", T0 + 800, officer="off-1")])
        assert [e.rule for e in out.events] == ["patrol_idle"]


def v1_store(path: Path) -> None:
    """A store as the first version wrote it: one JSON document per officer."""
    lon, lat = offset_m(*GRIDS.centroid(CELL), 3.0, -2.0)
    track = [[T0 + 30 * i, lon, lat] for i in range(24)]
    patrol = {
        "city": CITY,
        "officer": "off-1",
        "device": "dev-1",
        "grids": [CELL],
        "lead": "lead-1",
        "role": "inspector",
        "on_shift": True,
        "on_break": False,
        "watched_since": T0,
        "track": track,
        "last_seen": T0 + 690,
        "last_good_fix": T0 + 690,
        "offline": False,
        "outside": False,
        "out_since": None,
        "newest_fix": T0 + 690,
        "position": [T0 + 690, lon, lat],
        "sites": {},
        "firing": {"patrol_idle": T0 + 90},
    }
    coverage = {
        "codes": [CELL],
        "visited": [CELL],
        "distance_m": 12.5,
        "last": [lon, lat, T0 + 690],
        "max_speed_mps": 5.0,
    }
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE patrols (city TEXT NOT NULL, officer TEXT NOT NULL,"
            " state BLOB NOT NULL, PRIMARY KEY (city, officer))"
        )
        db.execute(
            "INSERT INTO patrols VALUES (?, ?, ?)",
            (CITY, "off-1", orjson.dumps({"patrol": patrol, "coverage": coverage})),
        )


async def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    v1_store(tmp_path / "patrols.sqlite")
    clock, out = ManualClock(T0 + 700), Collect()
    for _ in range(2):  # migrated, then read back in the new format
        async with patrol_rule(tmp_path, out, clock) as r:
            assert r.state_of(CITY, "off-1") == "idle"
            o = r.officer(CITY, "off-1")
            assert o is not None and o.device == "dev-1" and o.grids == (CELL,)
            assert r.fleet.distance[o.slot] == 12.5
            await feed(r, clock, fixes("dev-1", clock.now() + 10, 3))
    assert out.events == [], "idle before the restart is not flagged again"
    with sqlite3.connect(tmp_path / "patrols.sqlite") as db:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "patrols" not in tables


async def test_reconfiguring_keeps_the_state(tmp_path: Path) -> None:
    clock, out = ManualClock(T0), Collect()
    async with patrol_rule(tmp_path, out, clock) as r:
        await r.write([shift("off-1", "dev-1", "start", T0)])
        await feed(r, clock, fixes("dev-1", T0, 70))
        assert [e.rule for e in out.events] == ["patrol_idle"]
        r.reconfigure(PatrolsConfig(idle=IdleConfig(window=1200.0)), GRIDS)
        o = r.officer(CITY, "off-1")
        assert o is not None and r.fleet.window[o.slot] == 1200.0
        assert int(r.fleet.count[o.slot]) > 2, "the track is kept"
        await feed(r, clock, fixes("dev-1", clock.now() + 10, 2))
        # Seven minutes of the twenty-minute window so far: no longer idle.
        assert [(e.rule, e.status) for e in out.events][-1] == ("patrol_idle", "resolved")
        await feed(r, clock, fixes("dev-1", clock.now() + 10, 60))
        assert [e.status for e in out.events] == ["firing", "resolved", "firing"]


async def test_a_row_in_another_layout_restarts_the_watch(tmp_path: Path) -> None:
    clock, out = ManualClock(T0), Collect()
    async with patrol_rule(tmp_path, out, clock) as r:
        await r.write([shift("off-1", "dev-1", "start", T0)])
        await feed(r, clock, fixes("dev-1", T0, 10))
    with sqlite3.connect(tmp_path / "patrols.sqlite") as db:
        db.execute("UPDATE officers SET state = x'00'")
    clock.set(T0 + 1000)
    async with patrol_rule(tmp_path, out, clock) as r:
        assert r.state_of(CITY, "off-1") == "patrolling"
        o = r.officer(CITY, "off-1")
        assert o is not None and r.fleet.watched_since[o.slot] == T0 + 1000
        await feed(r, clock, fixes("dev-1", T0 + 1000, 3))
    assert out.events == []
