"""Rejection reasons: every way a message can fail, each with a stable name.

``internal_error`` means a decoder failed in a way it should not have (a bug):
the message is dead-lettered instead of stopping the collector.
``impossible_transition`` comes from the case rule, not the collector: a case
event that cannot follow the case's history (e.g. ``filed`` after ``closed``).
``ack_refused`` comes from alerting: an acknowledgement from a handheld that
cannot be applied (unknown alert, already acknowledged or resolved, or a
receiver who was not told of the alert).
``unknown_device`` and ``roster_mismatch`` come from the collector's register
of handhelds (:mod:`collectors.admission`): data from a handheld it does not
take, and a shift start whose officer, lead or device the roster contradicts.
``influx_refused`` comes from the InfluxDB writer: a point InfluxDB refused to
store (a field type conflict, a tag over ``max-values-per-tag``, a line it cannot
parse, a point beyond the retention policy).
"""

from __future__ import annotations

from typing import Final

REASONS: Final = (
    "payload_too_large",
    "bad_utf8",
    "malformed_json",
    "wrong_type",
    "missing_field",
    "out_of_range",
    "bad_timestamp",
    "future_timestamp",
    "stale_timestamp",
    "unknown_topic",
    "bad_id",
    "unknown_value",
    "too_many_fixes",
    "unknown_device",
    "roster_mismatch",
    "unsupported_type",
    "internal_error",
    "impossible_transition",
    "ack_refused",
    "influx_refused",
)


class Reject(Exception):
    """A message, or one element of a batch, is invalid; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
