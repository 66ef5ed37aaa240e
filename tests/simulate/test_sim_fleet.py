"""The simulated fleet, run directly (no broker): determinism and realism."""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest

from citywatch.geo import haversine_m, to_wgs84
from citywatch.models import CASE_EVENTS, ROLES, SHIFT_ACTIONS
from citywatch.simulate import Fleet, Message, SimConfig, cases, cell_index, make_district
from citywatch.simulate.fleet import message_kind, rfc3339

T0 = 1_790_000_000.0
TWO_HOURS = 7200.0
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00$")
TOPIC_RE = re.compile(
    r"^citywatch/321200/(devices/(?P<device>[^/]+)/(gps|heartbeat|status)"
    r"|officers/(?P<officer>[^/]+)/shift|cases/(?P<case>[^/]+)/events)$"
)
# Which event may follow which in a case's life.
NEXT = {
    "reported": {"filed", "cancelled"},
    "filed": {"dispatched", "cancelled"},
    "dispatched": {"accepted"},
    "accepted": {"resolved", "extended", "suspended"},
    "extended": {"resolved", "suspended"},
    "suspended": {"resumed"},
    "resumed": {"resolved"},
    "resolved": {"verified", "returned"},
    "returned": {"resolved"},
    "verified": {"closed"},
    "closed": {"evaluated"},
}


def ts_of(text: str) -> float:
    assert TS_RE.match(text), text
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Run:
    fleet: Fleet
    messages: list[Message]
    fixes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    heartbeats: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    shifts: list[dict[str, Any]] = field(default_factory=list)
    cases: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    arrays: list[list[dict[str, Any]]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """The ts of every message but statuses and buffered uploads, in publication order."""
    tracks: dict[str, np.ndarray] = field(default_factory=dict)
    """Per device, rows of (time, lon, lat) with positions converted to WGS-84."""


@pytest.fixture(scope="module")
def district() -> dict[str, Any]:
    return make_district()


@pytest.fixture(scope="module")
def run(district: dict[str, Any]) -> Run:
    """Two simulated hours of the default fleet, parsed once for every test."""
    fleet = Fleet(SimConfig(), district, T0)
    result = Run(fleet, fleet.advance(T0 + TWO_HOURS))
    fix_times: dict[str, list[float]] = defaultdict(list)
    for msg in result.messages:
        m = TOPIC_RE.match(msg.topic)
        assert m, msg.topic
        kind = message_kind(msg.topic)
        if kind == "status":
            result.status[m["device"]].append(msg.payload)
            continue
        payload = orjson.loads(msg.payload)
        batch = payload if isinstance(payload, list) else [payload]
        stamps = [ts_of(p["ts"]) for p in batch]
        if kind == "gps":
            result.fixes[m["device"]].extend(batch)
            fix_times[m["device"]].extend(stamps)
        if isinstance(payload, list):
            result.arrays.append(payload)
            continue
        result.times.append(stamps[0])
        if kind == "heartbeat":
            result.heartbeats[m["device"]].append(payload)
        elif kind == "shift":
            result.shifts.append({"officer": m["officer"], **payload})
        elif kind == "case":
            result.cases[m["case"]].append(payload)
    for device, fixes in result.fixes.items():
        rows = [(t, *wgs84(f)) for t, f in zip(fix_times[device], fixes, strict=True)]
        result.tracks[device] = np.array(rows)
    return result


def wgs84(fix: dict[str, Any]) -> tuple[float, float]:
    return to_wgs84(fix["lon"], fix["lat"], fix.get("crs", "wgs84"))


def metres_outside(track: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """How far each (time, lon, lat) row of ``track`` lies outside the nearest box."""
    lon, lat = track[:, 1:2], track[:, 2:3]
    w, s, e, n = (np.array([b[i] for b in boxes]) for i in range(4))
    dx = np.maximum(np.maximum(w - lon, lon - e), 0) * 111_320 * np.cos(np.radians(lat))
    dy = np.maximum(np.maximum(s - lat, lat - n), 0) * 110_574
    result: np.ndarray = np.hypot(dx, dy).min(axis=1)
    return result


def test_same_seed_same_messages_however_advanced(district: dict[str, Any]) -> None:
    config = SimConfig(devices=8, cases_per_day=3000)
    one = Fleet(config, district, T0).advance(T0 + 1200)
    stepped = Fleet(config, district, T0)
    chunks: list[Message] = []
    for k in range(1, 171):
        chunks += stepped.advance(T0 + k * 7.0317)
    chunks += stepped.advance(T0 + 1200)
    assert one == chunks
    other = Fleet(SimConfig(devices=8, cases_per_day=3000, seed=2), district, T0)
    assert one != other.advance(T0 + 1200)


@pytest.mark.parametrize("ts", [T0, T0 + 0.0004, T0 + 59.9996, T0 + 86399.9999996, 1e9 + 0.123])
def test_timestamps_match_isoformat(ts: float) -> None:
    cst = timezone(timedelta(hours=8))
    assert rfc3339(ts) == datetime.fromtimestamp(ts, cst).isoformat(timespec="milliseconds")


def test_advance_never_goes_back(district: dict[str, Any]) -> None:
    fleet = Fleet(SimConfig(devices=2), district, T0)
    assert fleet.advance(T0 + 120)
    assert fleet.advance(T0 + 60) == []
    assert fleet.now == T0 + 120
    assert fleet.next_due is not None and fleet.next_due > T0 + 120


def test_every_kind_of_message_is_emitted(run: Run) -> None:
    assert len(run.fixes) == 40 and all(len(f) > 500 for f in run.fixes.values())
    assert len(run.heartbeats) == 40
    starts = [s for s in run.shifts if s["action"] == "start"]
    assert len(starts) == 40
    assert {s["role"] for s in starts} == ROLES
    assert sum(s["role"] == "inspector" for s in starts) == 20
    assert any(s["action"] == "break_start" for s in run.shifts)
    assert len(run.cases) > 5
    for payloads in run.status.values():
        assert payloads[0] == b"online"
    for msg in run.messages:
        assert msg.qos == 1
        assert msg.retain == (message_kind(msg.topic) == "status")


def test_payloads_are_well_formed(run: Run) -> None:
    # The fixture has already parsed every payload and checked every ts.
    for msg in run.messages:
        if message_kind(msg.topic) == "status":
            assert msg.payload in (b"online", b"offline")
    for topic in {msg.topic for msg in run.messages}:
        assert all(ID_RE.match(segment) for segment in topic.split("/")), topic
    for device, fixes in run.fixes.items():
        assert [f["seq"] for f in fixes] == list(range(1, len(fixes) + 1)), device
        for f in fixes:
            assert f.get("crs", "wgs84") in ("gcj02", "bd09", "wgs84") and f.get("crs") != "wgs84"
            assert 3 <= f["acc"] <= 15 and f["speed"] >= 0 and 0 <= f["heading"] < 360
            assert 0 <= f["battery"] <= 100
    for beats in run.heartbeats.values():
        for hb in beats:
            assert set(hb) == {"ts", "battery", "charging", "signal", "app", "gps"}
            assert -115 <= hb["signal"] <= -50
        assert beats[0]["battery"] >= beats[-1]["battery"] or any(h["charging"] for h in beats)
    for s in run.shifts:
        assert s["action"] in SHIFT_ACTIONS
        assert all(ID_RE.match(s[k]) for k in ("officer", "device", "lead"))
        for code in s.get("grids", []):
            assert re.fullmatch(r"321202\d{9}", code)


def test_single_messages_come_in_time_order(run: Run) -> None:
    assert run.times == sorted(run.times)
    assert run.times[0] >= T0 and run.times[-1] <= T0 + TWO_HOURS


def test_cases_follow_a_valid_life(run: Run, district: dict[str, Any]) -> None:
    cells = cell_index(district)
    officers = {o.officer: o for o in run.fleet.roster}
    for case, events in run.cases.items():
        assert re.fullmatch(r"C321200\d{6}\d{4}", case)
        assert events[0]["event"] == "reported"
        times = [ts_of(e["ts"]) for e in events]
        assert times == sorted(times)
        for prev, cur in itertools.pairwise(events):
            assert cur["event"] in NEXT[prev["event"]], (case, prev["event"], cur["event"])
        for e in events:
            assert e["event"] in CASE_EVENTS
            assert e["category"] in {"0101", "0102", "0203", "0301", "0401", "0402", "0501"}
            assert e["unit"].startswith("unit-") and isinstance(e["urgent"], bool)
            w, s, east, n = cells[e["grid"]]
            assert w <= e["lon"] <= east and s <= e["lat"] <= n
            if e["event"] == "reported":
                assert officers[e["officer"]].role == "inspector"
            if e["event"] in ("accepted", "resolved"):
                assert officers[e["officer"]].role == "enforcer"


def test_case_lives_over_many_cases() -> None:
    rng = random.Random(7)
    lives = []
    for _ in range(5000):
        category = cases.pick_category(rng)
        urgent = rng.random() < 0.1
        steps = cases.plan_case(rng, T0, urgent, category, "off-0001", "off-0002")
        names = [name for _, name, _ in steps]
        assert [t for t, _, _ in steps] == sorted(t for t, _, _ in steps)
        assert all(b in NEXT[a] for a, b in itertools.pairwise(names)), names
        assert names[-1] in ("evaluated", "cancelled")
        lives.append((steps, urgent, category))
    for name, low, high in [
        ("returned", 0.03, 0.07),
        ("cancelled", 0.01, 0.03),
        ("extended", 0.015, 0.045),
        ("suspended", 0.015, 0.045),
    ]:
        share = sum(any(n == name for _, n, _ in steps) for steps, _, _ in lives) / len(lives)
        assert low < share < high, (name, share)
    late = 0
    handled = [life for life in lives if life[0][-1][1] == "evaluated"]
    for steps, urgent, category in handled:
        at = {name: t for t, name, _ in reversed(steps)}  # first occurrence of each
        limit = cases.URGENT_LIMIT if urgent else category.limit
        limit += 7200 * ("extended" in at) + (at.get("resumed", 0) - at.get("suspended", 0))
        late += at["resolved"] - at["dispatched"] > limit
    assert 0.07 < late / len(handled) < 0.13
    assert any(extra == {"extend": "2h"} for steps, _, _ in lives for _, _, extra in steps)


def test_idle_officer_stays_put_for_ten_minutes(run: Run) -> None:
    idle = [d for d, tags in run.fleet.behaviours().items() if "idle" in tags]
    assert idle

    def longest_stay(device: str) -> float:
        t, lon, lat = run.tracks[device].T
        x = (lon - lon[0]) * 111_320 * np.cos(np.radians(lat[0]))
        y = (lat - lat[0]) * 110_574
        best = 0.0
        for i in range(0, len(t), 6):
            j = int(np.searchsorted(t, t[i] + 600))
            if j >= len(t):
                break
            cx, cy = np.median(x[i : j + 1]), np.median(y[i : j + 1])
            near = np.hypot(x[i : j + 1] - cx, y[i : j + 1] - cy) <= 50
            # A stray multipath outlier may break the run; the officer has not moved.
            if near.mean() >= 0.9:
                best = max(best, t[j] - t[i])
        return best

    assert max(longest_stay(d) for d in idle) >= 600
    busy = [d for d, tags in run.fleet.behaviours().items() if not tags][:5]
    assert all(longest_stay(d) == 0 for d in busy)


def test_some_officer_leaves_their_grids(run: Run, district: dict[str, Any]) -> None:
    cells = cell_index(district)
    grids = {s["device"]: [cells[g] for g in s["grids"]] for s in run.shifts if "grids" in s}
    far = {d: metres_outside(track, grids[d]).max() for d, track in run.tracks.items()}
    leavers = {d for d, tags in run.fleet.behaviours().items() if "leave_grid" in tags}
    assert leavers and all(far[d] > 300 for d in leavers)
    # Everyone else strays only by GPS noise and the odd outlier.
    assert all(far[d] < 150 for d in far if d not in leavers)


def test_offline_devices_fall_silent_and_come_back(run: Run) -> None:
    gaps = {
        d: max(ts_of(b["ts"]) - ts_of(a["ts"]) for a, b in itertools.pairwise(hbs))
        for d, hbs in run.heartbeats.items()
    }
    silent = {d for d, gap in gaps.items() if gap > 300}
    assert silent == {d for d, tags in run.fleet.behaviours().items() if "offline" in tags}
    for device in silent:
        assert run.status[device][:3] == [b"online", b"offline", b"online"]
    assert any(len(batch) > 20 for batch in run.arrays), "buffered fixes are uploaded"
    for batch in run.arrays:
        times = [ts_of(f["ts"]) for f in batch]
        assert times == sorted(times)


def test_gps_lost_keeps_heartbeats_but_stops_fixes(run: Run) -> None:
    lost = [d for d, tags in run.fleet.behaviours().items() if "gps_lost" in tags]
    assert lost
    for device in lost:
        beats = run.heartbeats[device]
        off = [ts_of(h["ts"]) for h in beats if not h["gps"]]
        assert len(off) >= 5
        fix_times = [ts_of(f["ts"]) for f in run.fixes[device]]
        assert not any(min(off) <= t <= max(off) for t in fix_times)


def test_gcj02_and_bd09_devices_report_converted_positions(
    run: Run, district: dict[str, Any]
) -> None:
    cells = cell_index(district)
    for officer in run.fleet.roster:
        fixes = run.fixes[officer.device]
        assert {f.get("crs", "wgs84") for f in fixes} == {officer.crs}
        if officer.crs == "wgs84" or "leave_grid" in officer.behaviours:
            continue
        boxes = [cells[g] for g in officer.grids]
        track = run.tracks[officer.device]
        shift = [
            haversine_m(f["lon"], f["lat"], lon, lat)
            for f, (_, lon, lat) in zip(fixes, track, strict=True)
        ]
        assert min(shift) > 400, "the datum shift near Taizhou is 500 m (GCJ-02) or more"
        assert np.median(metres_outside(track, boxes)) < 15
    crs = [o.crs for o in run.fleet.roster]
    assert crs.count("gcj02") == 8 and crs.count("bd09") == 2


def test_officers_have_adjacent_grids_in_one_community(run: Run) -> None:
    leads = set()
    for officer in run.fleet.roster:
        assert 4 <= len(officer.grids) <= 9
        assert all(g.startswith(officer.community) for g in officer.grids)
        assert officer.lead == f"lead-{officer.community[6:9]}{officer.community[9:]}"
        leads.add(officer.lead)
        cells = {int(g[-3:]) - 1 for g in officer.grids}
        seen, todo = set(), [min(cells)]
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            r, k = divmod(c, 6)
            todo += [
                n for n in cells if divmod(n, 6) in ((r + 1, k), (r - 1, k), (r, k + 1), (r, k - 1))
            ]
        assert seen == cells, officer
    assert len(leads) == 9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"devices": -1},
        {"fix_interval": 0},
        {"idle_share": 1.5},
        {"city": "32/12"},
        {"topic_root": "a/+"},
    ],
)
def test_config_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**kwargs)
