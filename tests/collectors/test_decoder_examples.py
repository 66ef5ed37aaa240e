"""The example messages under schemas/examples/, through the decoder of their topic.

Every ``valid-*.json`` must be accepted; every ``invalid-*.json`` must be refused for the
reason listed here, except where citywatch is documented to be more lenient than the schema
(docs/protocol.md §9).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig, OwnTracksConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.topics import Router
from citywatch.models import (
    AlertAck,
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    Rejected,
    ShiftEvent,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
CITY = "321200"
CFG = IngestConfig(owntracks=OwnTracksConfig(city=CITY, devices={"wangli/phone": "cgt-0901"}))
TOPICS = {
    "gps": f"citywatch/{CITY}/devices/cgt-0042/gps",
    "heartbeat": f"citywatch/{CITY}/devices/cgt-0042/heartbeat",
    "status": f"citywatch/{CITY}/devices/cgt-0042/status",
    "shift": f"citywatch/{CITY}/officers/INS0042/shift",
    "case-event": f"citywatch/{CITY}/cases/3212002026112200417/events",
    "owntracks-location": "owntracks/wangli/phone",
    "alert-ack": f"citywatch/{CITY}/acks/lead-1",
}
RECORD_TYPES = {
    "gps": Fix,
    "heartbeat": Heartbeat,
    "status": DeviceStatus,
    "shift": ShiftEvent,
    "case-event": CaseEvent,
    "owntracks-location": Fix,
    "alert-ack": AlertAck,
}
DEFAULT_TS = 1795313730.0  # for examples without a usable timestamp

# invalid example -> the reason citywatch gives
REASONS = {
    "alert-ack/invalid-alert-id-string": "wrong_type",
    "alert-ack/invalid-alert-id-zero": "out_of_range",
    "alert-ack/invalid-missing-alert-id": "missing_field",
    "alert-ack/invalid-naive-timestamp": "bad_timestamp",
    "alert-ack/invalid-note-line-break": "out_of_range",
    "alert-ack/invalid-note-too-long": "out_of_range",
    "case-event/invalid-category-code": "bad_id",
    "case-event/invalid-extend-negative": "out_of_range",
    "case-event/invalid-extend-words": "wrong_type",
    "case-event/invalid-extend-zero": "out_of_range",
    "case-event/invalid-extended-without-extend": "missing_field",
    "case-event/invalid-lat-without-lon": "missing_field",
    "case-event/invalid-missing-event": "missing_field",
    "case-event/invalid-unknown-event": "unknown_value",
    "case-event/invalid-urgent-string": "wrong_type",
    "gps/invalid-heading-over-360": "out_of_range",
    "gps/invalid-lat-as-string": "wrong_type",
    "gps/invalid-lat-out-of-range": "out_of_range",
    "gps/invalid-missing-ts": "missing_field",
    "gps/invalid-naive-timestamp": "bad_timestamp",
    "gps/invalid-negative-speed": "out_of_range",
    "gps/invalid-null-island": "out_of_range",
    "gps/invalid-seq-fraction": "wrong_type",
    "gps/invalid-string-payload": "wrong_type",
    "gps/invalid-unknown-crs": "unknown_value",
    "heartbeat/invalid-app-too-long": "out_of_range",
    "heartbeat/invalid-battery-over-100": "out_of_range",
    "heartbeat/invalid-charging-string": "wrong_type",
    "heartbeat/invalid-missing-ts": "missing_field",
    "heartbeat/invalid-positive-signal": "out_of_range",
    "heartbeat/invalid-timestamp-format": "bad_timestamp",
    "owntracks-location/invalid-battery-over-100": "out_of_range",
    "owntracks-location/invalid-missing-tst": "missing_field",
    "owntracks-location/invalid-negative-velocity": "out_of_range",
    "owntracks-location/invalid-null-island": "out_of_range",
    "owntracks-location/invalid-transition-type": "unsupported_type",
    "shift/invalid-bad-lead-id": "bad_id",
    "shift/invalid-missing-action": "missing_field",
    "shift/invalid-short-grid-code": "bad_id",
    "shift/invalid-start-empty-grids": "out_of_range",
    "shift/invalid-start-without-grids": "missing_field",
    "shift/invalid-unknown-action": "unknown_value",
    "shift/invalid-unknown-role": "unknown_value",
    "status/invalid-boolean-status": "wrong_type",
    "status/invalid-missing-status": "missing_field",
    "status/invalid-unknown-status": "unknown_value",
}
# Refused by the schema, accepted by citywatch on purpose (docs/protocol.md §3.3 and §9).
LENIENT = {
    "status/invalid-missing-ts",  # the receive time stands in for ts
    "owntracks-location/invalid-tst-string",  # tst may be an ISO 8601 date-time
}
# A GPS array keeps its valid fixes (docs/protocol.md §3.1): index -> reason.
PARTIAL = {"gps/invalid-batch-bad-element": {1: "missing_field"}}


def key(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def examples(prefix: str) -> list[Path]:
    # Dead letters and alert pushes are citywatch's output, not messages it decodes.
    own = ("deadletter", "alert-push")
    return sorted(p for p in EXAMPLES.glob(f"*/{prefix}-*.json") if p.parent.name not in own)


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        return dt.timestamp() if dt.tzinfo is not None else None
    return None


def received_at(body: Any) -> float:
    """Shortly after the example's newest timestamp, as if it had just been sent."""
    items = body if isinstance(body, list) else [body]
    stamps = [
        t
        for item in items
        if isinstance(item, dict)
        for t in (_epoch(item.get("ts")), _epoch(item.get("tst")))
        if t is not None
    ]
    return max(stamps, default=DEFAULT_TS) + 1.0


def decode(path: Path) -> list[Any]:
    raw = path.read_bytes()
    msg = Incoming(TOPICS[path.parent.name], raw, received_at(json.loads(raw)))
    decoder = BatchDecoder(CFG, Router(), CollectorMetrics(CollectorRegistry()))
    return decoder.decode([msg]).records


def test_there_are_examples_for_every_topic_kind() -> None:
    assert {p.parent.name for p in examples("valid")} == set(TOPICS)
    assert {p.parent.name for p in examples("invalid")} == set(TOPICS)


@pytest.mark.parametrize("path", examples("valid"), ids=key)
def test_valid_example_is_accepted(path: Path) -> None:
    records = decode(path)
    rejected = [r for r in records if isinstance(r, Rejected)]
    assert not rejected, [(r.reason, r.detail) for r in rejected]
    body = json.loads(path.read_text(encoding="utf-8"))
    assert len(records) == (len(body) if isinstance(body, list) else 1)
    assert all(type(r) is RECORD_TYPES[path.parent.name] for r in records)


@pytest.mark.parametrize("path", examples("invalid"), ids=key)
def test_invalid_example_is_refused(path: Path) -> None:
    name = key(path)
    assert name in REASONS or name in LENIENT or name in PARTIAL, f"add {name} to a table"
    records = decode(path)
    rejected = {r.element: r.reason for r in records if isinstance(r, Rejected)}
    if name in LENIENT:
        assert rejected == {}
        assert len(records) == 1
    elif name in PARTIAL:
        assert rejected == PARTIAL[name]
        body = json.loads(path.read_text(encoding="utf-8"))
        assert sum(type(r) is Fix for r in records) == len(body) - len(rejected)
    else:
        assert rejected == {None: REASONS[name]}


def test_tables_name_existing_examples() -> None:
    names = {key(p) for p in examples("invalid")}
    listed = set(REASONS) | LENIENT | set(PARTIAL)
    assert listed <= names, listed - names
