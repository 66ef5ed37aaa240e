"""Decoder for ``cases/{case}/events``."""

from __future__ import annotations

import re

from citywatch.collectors import fields as f
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.handheld import position
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.reject import Reject
from citywatch.collectors.shifts import GRID_CODE
from citywatch.models import CASE_EVENTS, CaseEvent, Record

_CATEGORY = re.compile(r"[0-9A-Za-z]{2,16}").fullmatch


def decode_case_event(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """One step of a case; ``extended`` must say by how much."""
    o = f.expect_object(f.parse_json(msg.payload), "case event")
    ts = f.timestamp(o, "ts", msg.received_at, cfg.max_future, cfg.max_age)
    event = f.choice(o, "event", CASE_EVENTS, required=True)
    assert event is not None
    category = f.text(o, "category", 16)
    if category is not None and not _CATEGORY(category):
        raise Reject("bad_id", f"category: {category!r} must be 2-16 letters or digits")
    grid = f.text(o, "grid", 15)
    if grid is not None and not GRID_CODE(grid):
        raise Reject("bad_id", f"grid: {grid!r} is not a 15-digit grid code")
    lat = lon = None
    if "lat" in o or "lon" in o:
        lat, lon = position(o)
    urgent = f.boolean(o, "urgent")
    return [
        CaseEvent(
            route.city,
            route.subject,
            ts,
            event,
            msg.received_at,
            category=category,
            urgent=bool(urgent),
            grid=grid,
            unit=f.ident(o, "unit"),
            lat=lat,
            lon=lon,
            officer=f.ident(o, "officer"),
            extend=f.duration_field(o, "extend", required=event == "extended"),
        )
    ]
