"""Records to InfluxDB points (citywatch/influx/schema.py), written to a real InfluxDB 1.x."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Any

import pytest

from citywatch.influx.lineprotocol import encode
from citywatch.influx.schema import fix_line, to_line, ts_ns
from citywatch.models import (
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    Record,
    Rejected,
    ShiftEvent,
)
from tests.services import Influx

CITY = "321200"
TS = 1795313730.25  # 2026-11-22T02:15:30.25Z
TS_NS = 1795313730250000000
RECV = TS + 0.5
TOPIC = f"citywatch/{CITY}/devices/cgt-0042/gps"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write(influx: Influx, db: str, records: list[Record]) -> None:
    query = urllib.parse.urlencode({"db": db, "precision": "ns"})
    body = "\n".join(to_line(r) for r in records).encode()
    req = urllib.request.Request(f"{influx.url}/write?{query}", data=body, method="POST")
    try:
        with _OPENER.open(req, timeout=30) as resp:
            assert resp.status == 204
    except urllib.error.HTTPError as exc:
        pytest.fail(f"InfluxDB refused {body!r}: {exc.code} {exc.read().decode()}")


def spread(ts: float, key: str) -> int:
    return ts_ns(ts) + zlib.crc32(key.encode()) % 1000


FULL_FIX = Fix(CITY, "cgt-0042", TS, 32.457738515006604, 119.9181380725663, RECV,
               acc=8.5, speed=1.2, heading=87.5, alt=12.0, battery=76.0, seq=10452)  # fmt: skip
OWNTRACKS_FIX = Fix(CITY, "cgt-0901", TS, 32.448301, 119.911042, RECV, source="owntracks")
FULL_CASE = CaseEvent(CITY, "3212002026112200417", TS, "reported", RECV, category="0101",
                      urgent=True, grid="321202001002005", unit="hl-water-supply",
                      lat=32.45, lon=119.92, officer="INS0311", extend=None)  # fmt: skip
REJECTED = Rejected("gps", "out_of_range", "lat: 95.0 is outside [-90, 90]", TOPIC, RECV, CITY, 1)

# record -> (measurement, expected point as read back with SELECT *)
CASES: dict[str, tuple[Record, str, dict[str, Any]]] = {
    "fix-full": (
        FULL_FIX,
        "gps",
        {"time": TS_NS, "city": CITY, "device": "cgt-0042", "lat": 32.457738515006604,
         "lon": 119.9181380725663, "acc": 8.5, "speed": 1.2, "heading": 87.5, "alt": 12.0,
         "battery": 76.0, "seq": 10452},
    ),
    "fix-owntracks": (
        OWNTRACKS_FIX,
        "gps",
        {"time": TS_NS, "city": CITY, "device": "cgt-0901", "lat": 32.448301,
         "lon": 119.911042, "source": "owntracks"},
    ),
    "heartbeat-full": (
        Heartbeat(CITY, "cgt-0042", TS, RECV, battery=75.0, charging=False, signal=-87.0,
                  app="5.3.1", gps=True),
        "heartbeat",
        {"time": TS_NS, "city": CITY, "device": "cgt-0042", "battery": 75.0, "charging": False,
         "signal": -87.0, "app": "5.3.1", "gps": True, "recv_lag": 0.5},
    ),
    "heartbeat-minimal": (
        Heartbeat(CITY, "cgt-0042", TS, TS + 2.0004),
        "heartbeat",
        {"time": TS_NS, "city": CITY, "device": "cgt-0042", "recv_lag": 2.0},
    ),
    "status-online": (
        DeviceStatus(CITY, "cgt-0042", True, TS, RECV),
        "device_status",
        {"time": TS_NS, "city": CITY, "device": "cgt-0042", "online": True, "status": "online",
         "retained": False},
    ),
    "status-offline-retained": (
        DeviceStatus(CITY, "cgt-0042", False, TS, RECV, retained=True),
        "device_status",
        {"time": TS_NS, "city": CITY, "device": "cgt-0042", "online": False,
         "status": "offline", "retained": True},
    ),
    "shift-start": (
        ShiftEvent(CITY, "INS0042", TS, "start", RECV, device="cgt-0042",
                   grids=("321202001002005", "321202001002006"), lead="INS0020",
                   role="inspector"),
        "shift",
        {"time": TS_NS, "city": CITY, "officer": "INS0042", "action": "start", "on_duty": True,
         "device": "cgt-0042", "grids": "321202001002005,321202001002006", "lead": "INS0020",
         "role": "inspector"},
    ),
    # Without details a shift point still has a field: on_duty, the state after the action.
    "shift-end": (
        ShiftEvent(CITY, "INS0042", TS, "end", RECV),
        "shift",
        {"time": TS_NS, "city": CITY, "officer": "INS0042", "action": "end", "on_duty": False},
    ),
    "shift-break-start": (
        ShiftEvent(CITY, "INS0042", TS, "break_start", RECV),
        "shift",
        {"time": TS_NS, "city": CITY, "officer": "INS0042", "action": "break_start",
         "on_duty": False},
    ),
    "shift-break-end": (
        ShiftEvent(CITY, "INS0042", TS, "break_end", RECV),
        "shift",
        {"time": TS_NS, "city": CITY, "officer": "INS0042", "action": "break_end",
         "on_duty": True},
    ),
    "case-full": (
        FULL_CASE,
        "case_event",
        {"time": spread(TS, FULL_CASE.case + "reported"), "city": CITY, "event": "reported",
         "unit": "hl-water-supply", "category": "0101", "case": FULL_CASE.case, "urgent": True,
         "grid": "321202001002005", "lat": 32.45, "lon": 119.92, "officer": "INS0311"},
    ),
    "case-extended": (
        CaseEvent(CITY, "C-1", TS, "extended", RECV, extend=86400.0),
        "case_event",
        {"time": spread(TS, "C-1extended"), "city": CITY, "event": "extended",
         "case": "C-1", "urgent": False, "extend_s": 86400.0},
    ),
    "rejected-element": (
        REJECTED,
        "ingest_rejected",
        {"time": spread(RECV, f"{TOPIC}#1#0#{REJECTED.detail}"), "city": CITY, "kind": "gps",
         "reason": "out_of_range", "count": 1, "topic": TOPIC, "detail": REJECTED.detail,
         "index": 1},
    ),
    "rejected-unknown-topic": (
        Rejected("unknown", "unknown_topic", "topic 'x/y' is not part of the contract", "x/y",
                 RECV),
        "ingest_rejected",
        {"time": spread(RECV, "x/y#None#0#topic 'x/y' is not part of the contract"),
         "kind": "unknown", "reason": "unknown_topic",
         "count": 1, "topic": "x/y", "detail": "topic 'x/y' is not part of the contract"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_record_round_trips_through_influxdb(name: str, influx: Influx, influx_db: str) -> None:
    record, measurement, expected = CASES[name]
    write(influx, influx_db, [record])
    assert influx.points(measurement, influx_db) == [expected]


# -- exact lines --------------------------------------------------------------------


def test_fix_line_text() -> None:
    assert to_line(FULL_FIX) == (
        "gps,city=321200,device=cgt-0042 lat=32.457738515006604,lon=119.9181380725663,"
        "acc=8.5,speed=1.2,heading=87.5,alt=12.0,battery=76.0,seq=10452i 1795313730250000000"
    )


@pytest.mark.parametrize(
    "fix",
    [
        FULL_FIX,
        OWNTRACKS_FIX,
        Fix(CITY, "d", TS, -1.5, 2.5, RECV, seq=0),
        Fix(CITY, "d", TS, 1.0, 2.0, RECV, acc=0.0, alt=-10.0),
        Fix(CITY, "a,b=c d", TS, 1.0, 2.0, RECV),  # not a valid id, but escaped all the same
    ],
)
def test_fast_fix_line_matches_the_generic_encoder(fix: Fix) -> None:
    fields = {
        "lat": fix.lat, "lon": fix.lon, "acc": fix.acc, "speed": fix.speed,
        "heading": fix.heading, "alt": fix.alt, "battery": fix.battery, "seq": fix.seq,
        "source": None if fix.source == "handheld" else fix.source,
    }  # fmt: skip
    expected = encode("gps", {"city": fix.city, "device": fix.device}, fields, ts_ns(fix.ts))
    assert fix_line(fix) == expected
    assert fix_line(fix) == expected  # a second time, from the cached line head


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        (TS, TS_NS),
        (0.0, 0),
        (1.0000004, 1_000_000_000),
        (1.0000006, 1_000_001_000),
        (1795313730.123456, 1795313730123456000),
    ],
)
def test_ts_ns_rounds_to_the_microsecond(ts: float, ns: int) -> None:
    assert ts_ns(ts) == ns


def test_to_line_of_an_unknown_type() -> None:
    with pytest.raises(KeyError):
        to_line(("not", "a", "record"))  # type: ignore[arg-type]


def test_rejected_detail_is_capped() -> None:
    long = REJECTED._replace(detail="x" * 2000)
    assert f'detail="{"x" * 512}"' in to_line(long)
    assert "x" * 513 not in to_line(long)


# -- identity of points: overwrite a redelivery, keep distinct events ------------------


def test_case_events_of_different_cases_at_the_same_ts_both_survive(
    influx: Influx, influx_db: str
) -> None:
    a = CaseEvent(CITY, "3212002026112200417", TS, "dispatched", RECV, unit="u1")
    b = a._replace(case="3212002026112200418")
    assert spread(TS, a.case + a.event) != spread(TS, b.case + b.event)
    write(influx, influx_db, [a, b])
    points = influx.points("case_event", influx_db)
    assert sorted(p["case"] for p in points) == [a.case, b.case]
    assert all(TS_NS <= p["time"] < TS_NS + 1000 for p in points)


@pytest.mark.parametrize("name", ["fix-full", "heartbeat-full", "status-online", "case-full"])
def test_writing_the_same_record_twice_stores_one_point(
    name: str, influx: Influx, influx_db: str
) -> None:
    record, measurement, _ = CASES[name]
    redelivered = record._replace(received_at=record.received_at + 60)
    write(influx, influx_db, [record])
    write(influx, influx_db, [record, redelivered])
    assert len(influx.points(measurement, influx_db)) == 1


def test_the_same_case_event_in_one_batch_is_one_point(influx: Influx, influx_db: str) -> None:
    write(influx, influx_db, [FULL_CASE, FULL_CASE, FULL_CASE])
    assert len(influx.points("case_event", influx_db)) == 1


def test_a_redelivered_rejection_is_counted_again(influx: Influx, influx_db: str) -> None:
    # Rejections are keyed by receive time (docs/schema.md): a redelivery is a new point.
    write(influx, influx_db, [REJECTED, REJECTED._replace(received_at=RECV + 1)])
    assert len(influx.points("ingest_rejected", influx_db)) == 2


def test_two_different_rejections_on_one_topic_in_one_read_are_two_points(
    influx: Influx, influx_db: str
) -> None:
    # Same topic, same read, both whole-message rejections for the same reason; only the
    # payloads (and so the details) differ.
    first = REJECTED._replace(detail="lat: 95.0 is outside [-90, 90]", element=None)
    other = REJECTED._replace(detail="lon: -181.0 is outside [-180, 180]", element=None)
    write(influx, influx_db, [first, other])
    assert len(influx.points("ingest_rejected", influx_db)) == 2
