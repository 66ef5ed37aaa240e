"""``/api/v1/devices``, ``/api/v1/officers`` and an officer's track from InfluxDB."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from citywatch.api import params
from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError
from citywatch.api.live import DeviceBoard
from citywatch.api.state import BOARD, INFLUX, PATROLS
from citywatch.influx.client import QueryError
from citywatch.rules.patrols.specs import STATE_NAMES

OFFICER_STATES = STATE_NAMES
TRACK_MAX_POINTS = 20_000
TRACK_MAX_SPAN = 7 * 86400.0
_ID = re.compile(params.ID).fullmatch


def _board(request: web.Request) -> DeviceBoard:
    board = request.app[BOARD]
    if board is None:
        raise ApiError(503, "the device board needs the collector in this process")
    return board


async def list_devices(
    request: web.Request,
    who: Principal,
    *,
    status: frozenset[str] | None,
    city: str | None,
    grid: str | None,
    limit: int,
    offset: int,
) -> web.Response:
    board = _board(request)
    now = time.time()
    cfg = board.patrols
    scoped = bool(who.cities or who.grids)
    out = []
    for d in board.sorted():
        if city and d.city != city:
            continue
        if grid and not any(g.startswith(grid) for g in d.grids):
            continue
        if scoped and not _sees_any(who, d.city, d.grids):
            continue
        if status and d.status(now, cfg) not in status:
            continue
        out.append(d)
    return params.respond(params.paginate(out, limit, offset, lambda d: d.to_json(now, cfg)))


def _sees_any(p: Principal, city: str, grids: tuple[str, ...]) -> bool:
    return p.sees(city, None) if not grids else any(p.sees(city, g) for g in grids)


async def get_device(
    request: web.Request, who: Principal, *, device: str, city: str | None
) -> web.Response:
    board = _board(request)
    found = [
        d
        for (c, dev), d in board.devices.items()
        if dev == device and (city is None or c == city) and _sees_any(who, c, d.grids)
    ]
    if not found:
        raise ApiError(404, f"no device {device}")
    if len(found) > 1:
        raise ApiError(409, f"device {device} is known in several cities: give ?city=")
    return params.respond(found[0].to_json(time.time(), board.patrols))


def _officers(request: web.Request) -> list[dict[str, Any]]:
    rule = request.app[PATROLS]
    if rule is None:
        raise ApiError(503, "the patrol rules do not run in this process (--only)")
    return rule.officer_views()


async def list_officers(
    request: web.Request,
    who: Principal,
    *,
    state: frozenset[str] | None,
    city: str | None,
    grid: str | None,
    lead: str | None,
    limit: int,
    offset: int,
) -> web.Response:
    """Officers on shift, with grids, lead, patrol state and coverage so far."""
    out = []
    for o in sorted(_officers(request), key=lambda o: (o["city"], o["officer"])):
        grids = tuple(o.get("grids") or ())
        if city and o["city"] != city:
            continue
        if grid and not any(g.startswith(grid) for g in grids):
            continue
        if lead and o.get("lead") != lead:
            continue
        if state and o.get("state") not in state:
            continue
        if not _sees_any(who, o["city"], grids):
            continue
        out.append(o)
    return params.respond(params.paginate(out, limit, offset))


def _q(value: str) -> str:
    # Ids are already checked against [A-Za-z0-9_.-]; escaping is a second line of defence.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def officer_track(
    request: web.Request,
    who: Principal,
    *,
    officer: str,
    city: str | None,
    start: float | None,
    end: float | None,
) -> web.Response:
    """The officer's GPS track from InfluxDB as a GeoJSON Feature (LineString, times)."""
    end = end or time.time()
    start = start or end - 8 * 3600
    if start >= end:
        raise ApiError(400, "parameter 'from' must be before 'to'")
    if end - start > TRACK_MAX_SPAN:
        raise ApiError(400, "a track spans at most 7 days")
    known = [
        o for o in _officers(request) if o["officer"] == officer and (not city or o["city"] == city)
    ]
    if not known:
        raise ApiError(404, f"no officer {officer}")
    if len(known) > 1:
        raise ApiError(409, f"officer {officer} is on shift in several cities: give ?city=")
    o = known[0]
    if not _sees_any(who, o["city"], tuple(o.get("grids") or ())):
        raise ApiError(404, f"no officer {officer}")
    client = request.app[INFLUX]
    if client is None:
        raise ApiError(503, "no InfluxDB is configured (influx.url): tracks are not stored")
    lo, hi = int(start * 1e9), int(end * 1e9)
    try:
        shifts = await client.query(
            f"SELECT device, action FROM shift WHERE city = {_q(o['city'])}"
            f" AND officer = {_q(officer)} AND time >= {lo - 86400 * 10**9} AND time <= {hi}"
            " ORDER BY time ASC"
        )
        spans = _spans(_rows(shifts), o.get("device"), lo, hi)
        coords: list[list[float]] = []
        times: list[float] = []
        # Only while this officer carried the device: a handed-over device is another's track.
        for device, a, b in spans:
            res = await client.query(
                f"SELECT lon, lat, acc FROM gps WHERE city = {_q(o['city'])}"
                f" AND device = {_q(device)} AND time >= {a} AND time <= {b}"
                f" ORDER BY time ASC LIMIT {TRACK_MAX_POINTS}"
            )
            for t, lon, lat, _acc in _rows(res):
                coords.append([lon, lat])
                times.append(t / 1e9)
        devices = {d for d, _, _ in spans}
    except QueryError as exc:
        raise ApiError(502, f"InfluxDB query failed: {exc}") from None
    order = sorted(range(len(times)), key=times.__getitem__)
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [coords[i] for i in order]},
        "properties": {
            "city": o["city"],
            "officer": officer,
            "devices": sorted(devices),
            "from": start,
            "to": end,
            "times": [times[i] for i in order],
            "points": len(times),
            "truncated": len(times) >= TRACK_MAX_POINTS,
        },
    }
    return params.respond(feature)


def _spans(
    rows: list[list[Any]], current: str | None, lo: int, hi: int
) -> list[tuple[str, int, int]]:
    """(device, from, to) in ns: the officer's shifts with each device, within [lo, hi]."""
    spans: list[tuple[str, int, int]] = []
    open_at: int | None = None
    device: str | None = None
    for t, dev, action in rows:
        if action == "start" and isinstance(dev, str):
            if device is not None and open_at is not None:
                spans.append((device, open_at, t))
            device, open_at = dev, t
        elif action == "end" and device is not None and open_at is not None:
            spans.append((device, open_at, t))
            device, open_at = None, None
    if device is not None and open_at is not None:
        spans.append((device, open_at, hi))
    elif not spans and current:
        spans.append((current, lo, hi))  # on shift since before the stored history
    return [(d, max(a, lo), min(b, hi)) for d, a, b in spans if a <= hi and b >= lo and _ID(d)]


def _rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for r in results:
        for series in r.get("series", []):
            out.extend(series.get("values", []))
    return out
