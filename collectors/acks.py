"""Decoder for ``acks/{receiver}``: a receiver acknowledging an alert from a handheld."""

from __future__ import annotations

from citywatch.collectors import fields as f
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.reject import Reject
from citywatch.models import AlertAck, Record

MAX_NOTE = 500
MAX_ALERT_ID = 2**63 - 1


def decode_ack(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """``alert_id`` (the push's), an optional ``note`` and ``ts`` (default: receive time)."""
    o = f.expect_object(f.parse_json(msg.payload), "ack")
    alert_id = f.integer(o, "alert_id", 1, MAX_ALERT_ID)
    if alert_id is None:
        raise Reject("missing_field", "alert_id: required")
    ts = f.timestamp_or_now(o, "ts", msg.received_at, cfg.max_future, cfg.max_age)
    return [
        AlertAck(
            route.city,
            route.subject,
            alert_id,
            ts,
            msg.received_at,
            note=f.text(o, "note", MAX_NOTE),
        )
    ]
