"""Acknowledgements from handhelds: ``citywatch/{city}/acks/{receiver}`` to AlertAck records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.reject import Reject
from citywatch.collectors.topics import Route, Router
from citywatch.influx.schema import to_line
from citywatch.models import AlertAck, Record, Rejected

CITY = "321200"
NOW = 1795313731.0  # 2026-11-22T02:15:31Z, citywatch's clock on receipt
ACK = f"citywatch/{CITY}/acks/lead-1"


def decode(topic: str, body: Any) -> tuple[list[Record], CollectorRegistry]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    registry = CollectorRegistry()
    decoder = BatchDecoder(IngestConfig(), Router(), CollectorMetrics(registry))
    return decoder.decode([Incoming(topic, raw, NOW, mid=7)]).records, registry


def accept(body: Any, topic: str = ACK) -> AlertAck:
    records, _ = decode(topic, body)
    assert len(records) == 1 and type(records[0]) is AlertAck, records
    return records[0]


def refuse(body: Any, topic: str = ACK) -> Rejected:
    records, registry = decode(topic, body)
    assert len(records) == 1 and type(records[0]) is Rejected, records
    rej = records[0]
    assert registry.get_sample_value(
        "citywatch_ingest_rejected_total", {"kind": rej.kind, "reason": rej.reason}
    )
    return rej


def test_routing_of_acks() -> None:
    router = Router()
    assert router.route(ACK) == Route("ack", CITY, "lead-1")
    assert router.route("citywatch/110105/acks/A.b_c-9") == Route("ack", "110105", "A.b_c-9")
    assert Router("cw").route("cw/321200/acks/lead-1") == Route("ack", CITY, "lead-1")
    # The alerts section stays the service's own output.
    assert router.route(f"citywatch/{CITY}/alerts/lead-1") is None


@pytest.mark.parametrize(
    "topic",
    [f"citywatch/{CITY}/acks", f"citywatch/{CITY}/acks/lead-1/extra", f"citywatch/{CITY}/ack/x"],
)
def test_other_ack_topics_are_unknown(topic: str) -> None:
    with pytest.raises(Reject) as info:
        Router().route(topic)
    assert info.value.reason == "unknown_topic"


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        (f"citywatch/{CITY}/acks/lead 1", "receiver"),
        (f"citywatch/{CITY}/acks/王磊", "receiver"),
        (f"citywatch/{CITY}/acks/" + "x" * 65, "receiver"),
        (f"citywatch/{CITY}/acks/", "receiver"),
        ("citywatch/3212/acks/lead-1", "city"),
    ],
)
def test_bad_ids_in_ack_topics(topic: str, named: str) -> None:
    rej = refuse({"alert_id": 42}, topic)
    assert rej.reason == "bad_id"
    assert rej.detail.startswith(named)


def test_valid_ack() -> None:
    ack = accept({"alert_id": 42, "note": "已联系队员", "ts": "2026-11-22T10:15:00+08:00"})
    assert ack == AlertAck(CITY, "lead-1", 42, NOW - 31.0, NOW, "已联系队员")


def test_minimal_ack_takes_the_receive_time() -> None:
    ack = accept({"alert_id": 7})
    assert (ack.alert_id, ack.ts, ack.received_at, ack.note) == (7, NOW, NOW, None)
    assert accept({"alert_id": 7.0, "ts": NOW - 5}).ts == NOW - 5


def test_note_of_500_characters_is_accepted() -> None:
    assert accept({"alert_id": 1, "note": "队" * 500}).note == "队" * 500


@pytest.mark.parametrize(
    ("body", "reason", "named"),
    [
        ({"note": "已联系队员"}, "missing_field", "alert_id"),
        ({"alert_id": None}, "missing_field", "alert_id"),
        ({"alert_id": "42"}, "wrong_type", "alert_id"),
        ({"alert_id": True}, "wrong_type", "alert_id"),
        ({"alert_id": 4.5}, "wrong_type", "alert_id"),
        ({"alert_id": 0}, "out_of_range", "alert_id"),
        ({"alert_id": -3}, "out_of_range", "alert_id"),
        ({"alert_id": 2**63}, "out_of_range", "alert_id"),
        ({"alert_id": 42, "note": "队" * 501}, "out_of_range", "note"),
        ({"alert_id": 42, "note": ""}, "out_of_range", "note"),
        ({"alert_id": 42, "note": "已联系\n马上到"}, "out_of_range", "note"),
        ({"alert_id": 42, "note": 5}, "wrong_type", "note"),
        ({"alert_id": 42, "ts": "2026-11-22T10:15:00"}, "bad_timestamp", "ts"),
        ({"alert_id": 42, "ts": None}, "missing_field", "ts"),
        ({"alert_id": 42, "ts": NOW + 3600}, "future_timestamp", "ts"),
        ({"alert_id": 42, "ts": NOW - 8 * 86400}, "stale_timestamp", "ts"),
        ([{"alert_id": 42}], "wrong_type", "ack"),
        (b'{"alert_id": 42', "malformed_json", "payload"),
    ],
)
def test_invalid_acks_are_refused(body: Any, reason: str, named: str) -> None:
    rej = refuse(body)
    assert (rej.kind, rej.reason, rej.topic, rej.city) == ("ack", reason, ACK, CITY)
    assert rej.detail.startswith(named), rej.detail


def test_influx_point_overwrites_itself_on_redelivery() -> None:
    ack = AlertAck(CITY, "lead-1", 42, 1795313730.25, NOW, "已联系队员")
    line = to_line(ack)
    head = 'alert_ack,city=321200 receiver="lead-1",alert_id=42i,note="已联系队员" '
    assert line.startswith(head)
    assert to_line(ack._replace(received_at=NOW + 60)) == line
    other = to_line(ack._replace(receiver="lead-2"))
    assert other.rsplit(" ", 1)[1] != line.rsplit(" ", 1)[1]
    assert "note" not in to_line(ack._replace(note=None))
