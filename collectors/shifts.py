"""Decoder for ``officers/{officer}/shift``."""

from __future__ import annotations

import re

from citywatch.collectors import fields as f
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.reject import Reject
from citywatch.models import ROLES, SHIFT_ACTIONS, Record, ShiftEvent

GRID_CODE = re.compile(r"[0-9]{15}").fullmatch
MAX_GRIDS = 500


def grid_list(o: f.Obj, key: str) -> tuple[str, ...]:
    """A non-empty list of 15-digit grid codes."""
    v = o.get(key)
    if v is None:
        raise Reject("missing_field", f"{key}: required on start")
    if type(v) is not list:
        raise Reject("wrong_type", f"{key}: expected an array of grid codes")
    if not 0 < len(v) <= MAX_GRIDS:
        raise Reject("out_of_range", f"{key}: {len(v)} codes, expected 1 to {MAX_GRIDS}")
    for g in v:
        if type(g) is not str or not GRID_CODE(g):
            raise Reject("bad_id", f"{key}: {str(g)[:40]!r} is not a 15-digit grid code")
    return tuple(v)


def decode_shift(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """Shift start/end and breaks; ``start`` names the device, grids, lead and role."""
    o = f.expect_object(f.parse_json(msg.payload), "shift")
    ts = f.timestamp(o, "ts", msg.received_at, cfg.max_future, cfg.max_age)
    action = f.choice(o, "action", SHIFT_ACTIONS, required=True)
    assert action is not None
    if action == "start":
        return [
            ShiftEvent(
                route.city,
                route.subject,
                ts,
                action,
                msg.received_at,
                device=f.ident(o, "device", required=True),
                grids=grid_list(o, "grids"),
                lead=f.ident(o, "lead", required=True),
                role=f.choice(o, "role", ROLES, required=True),
            )
        ]
    return [ShiftEvent(route.city, route.subject, ts, action, msg.received_at)]
