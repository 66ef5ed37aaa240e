"""Valid messages of every kind, through BatchDecoder, become the right records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from citywatch.collectors.decode import BatchDecoder, Decoded
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.topics import Router
from citywatch.geo import gcj02_to_bd09, haversine_m, to_wgs84, wgs84_to_gcj02
from citywatch.models import (
    CASE_EVENTS,
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    Record,
    ShiftEvent,
)
from tests.collectors.samples import (
    CASE,
    CFG,
    CITY,
    GPS,
    HEARTBEAT,
    NOW,
    OWNTRACKS,
    SHIFT,
    STATUS,
    TS,
)

TS_TEXT = "2026-11-22T10:15:30.250+08:00"


def payload(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


def decode(*msgs: Incoming) -> tuple[Decoded, CollectorRegistry]:
    registry = CollectorRegistry()
    out = BatchDecoder(CFG, Router(), CollectorMetrics(registry)).decode(list(msgs))
    return out, registry


def accept(topic: str, body: Any, *, retained: bool = False) -> list[Record]:
    """Decode one message that must be accepted whole."""
    out, registry = decode(Incoming(topic, payload(body), NOW, retained))
    assert out.deadletters == []
    route = Router().route(topic)
    assert route is not None
    kind = route.kind
    assert registry.get_sample_value("citywatch_ingest_received_total", {"kind": kind}) == 1
    assert registry.get_sample_value("citywatch_ingest_accepted_total", {"kind": kind}) == len(
        out.records
    )
    return out.records


def one(topic: str, body: Any, **kw: Any) -> Record:
    (record,) = accept(topic, body, **kw)
    return record


# -- gps ------------------------------------------------------------------------------


def test_gps_object() -> None:
    fix = one(
        GPS,
        {"ts": TS, "lat": 32.455512, "lon": 119.922874, "acc": 8.5, "speed": 1.2,
         "heading": 87.5, "alt": 12.0, "battery": 76, "seq": 10452},
    )  # fmt: skip
    assert fix == Fix(CITY, "cgt-0042", TS, 32.455512, 119.922874, NOW, acc=8.5, speed=1.2,
                      heading=87.5, alt=12.0, battery=76.0, seq=10452)  # fmt: skip
    assert type(fix.battery) is float


def test_gps_minimal_with_integer_coordinates() -> None:
    fix = one(GPS, {"ts": 1795313730, "lat": 32, "lon": 120})
    assert fix == Fix(CITY, "cgt-0042", 1795313730.0, 32.0, 120.0, NOW)
    assert type(fix.lat) is float and type(fix.lon) is float


def test_gps_extra_fields_are_ignored() -> None:
    fix = one(GPS, {"ts": TS, "lat": 32.4, "lon": 119.9, "provider": "gps", "satellites": 9})
    assert fix == Fix(CITY, "cgt-0042", TS, 32.4, 119.9, NOW)


def test_gps_edge_values_are_accepted() -> None:
    body = {"ts": TS, "lat": -90.0, "lon": 180.0, "acc": 0, "speed": 0, "heading": 360,
            "alt": -1000, "battery": 100, "seq": 0}  # fmt: skip
    fix = one(GPS, body)
    assert (fix.lat, fix.lon, fix.heading, fix.seq) == (-90.0, 180.0, 360.0, 0)


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        (TS_TEXT, TS),
        ("2026-11-22T02:15:30.25Z", TS),
        ("2026-11-22T02:15:30Z", 1795313730.0),
        ("2026-11-21T21:45:30.25-04:30", TS),
        (1795313730.25, TS),
        (1795313730, 1795313730.0),
    ],
)
def test_timestamp_forms(text: object, ts: float) -> None:
    fix = one(GPS, {"ts": text, "lat": 32.4, "lon": 119.9})
    assert fix.ts == pytest.approx(ts, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    ["2026-11-22 10:15:30+08:00", "2026-11-22T10:15:30+0800", "2026-11-22T10:15:30.250+08"],
)
def test_lenient_iso_8601_timestamps(text: str) -> None:
    # docs/protocol.md §9: citywatch reads any ISO 8601 date-time with an offset that
    # datetime.fromisoformat reads, though the schemas ask for RFC 3339.
    assert one(GPS, {"ts": text, "lat": 32.4, "lon": 119.9}).ts == pytest.approx(TS, abs=0.3)


def test_timestamp_limits_are_inclusive() -> None:
    for ts in (NOW + CFG.max_future, NOW - CFG.max_age):
        assert one(GPS, {"ts": ts, "lat": 32.4, "lon": 119.9}).ts == ts


def test_gps_array() -> None:
    body = [
        {"ts": "2026-11-22T01:40:00Z", "lat": 32.448301, "lon": 119.911042, "seq": 10390},
        {"ts": "2026-11-22T01:40:30Z", "lat": 32.448517, "lon": 119.91163, "seq": 10391},
        {"ts": 1795311660, "lat": 32.44879, "lon": 119.912204, "speed": 1.4, "seq": 10392},
    ]
    fixes = accept(GPS, body)
    assert [type(f) for f in fixes] == [Fix, Fix, Fix]
    assert [f.seq for f in fixes] == [10390, 10391, 10392]  # type: ignore[union-attr]
    assert [f.ts for f in fixes] == [1795311600.0, 1795311630.0, 1795311660.0]
    assert fixes[2] == Fix(CITY, "cgt-0042", 1795311660.0, 32.44879, 119.912204, NOW,
                           speed=1.4, seq=10392)  # fmt: skip


def test_gps_array_of_the_largest_size() -> None:
    body = [{"ts": TS - i, "lat": 32.4, "lon": 119.9, "seq": i} for i in range(CFG.max_batch)]
    assert len(accept(GPS, body)) == CFG.max_batch


def test_fix_lag_is_observed() -> None:
    _, registry = decode(
        Incoming(GPS, payload([{"ts": NOW - 10, "lat": 32.4, "lon": 119.9}] * 2), NOW),
        Incoming(HEARTBEAT, payload({"ts": NOW - 100}), NOW),
    )
    assert registry.get_sample_value("citywatch_ingest_lag_seconds_count") == 2
    assert registry.get_sample_value("citywatch_ingest_lag_seconds_sum") == pytest.approx(20.0)
    assert registry.get_sample_value("citywatch_ingest_lag_seconds_bucket", {"le": "10.0"}) == 2


# -- datums -----------------------------------------------------------------------------

TRUE_WGS84 = (119.918138, 32.457739)  # (lon, lat) of a street corner in Taizhou


def test_gcj02_fix_is_stored_in_wgs84() -> None:
    glon, glat = wgs84_to_gcj02(*TRUE_WGS84)
    fix = one(GPS, {"ts": TS, "lat": glat, "lon": glon, "crs": "gcj02"})
    assert isinstance(fix, Fix)
    assert (fix.lon, fix.lat) == to_wgs84(glon, glat, "gcj02")
    assert haversine_m(fix.lon, fix.lat, *TRUE_WGS84) < 0.01
    assert haversine_m(glon, glat, *TRUE_WGS84) > 100  # the conversion mattered


def test_bd09_fix_is_stored_in_wgs84() -> None:
    blon, blat = gcj02_to_bd09(*wgs84_to_gcj02(*TRUE_WGS84))
    fix = one(GPS, {"ts": TS, "lat": blat, "lon": blon, "crs": "bd09"})
    assert isinstance(fix, Fix)
    assert (fix.lon, fix.lat) == to_wgs84(blon, blat, "bd09")
    assert haversine_m(fix.lon, fix.lat, *TRUE_WGS84) < 0.3


def test_explicit_wgs84_is_unchanged() -> None:
    fix = one(GPS, {"ts": TS, "lat": 32.457739, "lon": 119.918138, "crs": "wgs84"})
    assert (fix.lat, fix.lon) == (32.457739, 119.918138)  # type: ignore[union-attr]


def test_fixes_of_one_array_in_different_datums() -> None:
    glon, glat = wgs84_to_gcj02(*TRUE_WGS84)
    body = [
        {"ts": TS, "lat": TRUE_WGS84[1], "lon": TRUE_WGS84[0]},
        {"ts": TS + 1, "lat": glat, "lon": glon, "crs": "gcj02"},
    ]
    a, b = accept(GPS, body)
    assert haversine_m(a.lon, a.lat, b.lon, b.lat) < 0.01  # type: ignore[union-attr]


def test_case_site_is_converted_to_wgs84() -> None:
    glon, glat = wgs84_to_gcj02(*TRUE_WGS84)
    event = one(CASE, {"ts": TS, "event": "reported", "lat": glat, "lon": glon, "crs": "gcj02"})
    assert isinstance(event, CaseEvent)
    assert event.lat is not None and event.lon is not None
    assert haversine_m(event.lon, event.lat, *TRUE_WGS84) < 0.01


# -- heartbeat and status ---------------------------------------------------------------


def test_heartbeat_full() -> None:
    body = {"ts": TS_TEXT, "battery": 75, "charging": False, "signal": -87, "app": "5.3.1",
            "gps": True}  # fmt: skip
    assert one(HEARTBEAT, body) == Heartbeat(CITY, "cgt-0042", TS, NOW, battery=75.0,
                                             charging=False, signal=-87.0, app="5.3.1",
                                             gps=True)  # fmt: skip


def test_heartbeat_minimal() -> None:
    assert one(HEARTBEAT, {"ts": 1795313760.5 - 30}) == Heartbeat(
        CITY, "cgt-0042", 1795313730.5, NOW
    )


@pytest.mark.parametrize(
    ("body", "online"),
    [(b"online", True), (b"offline", False), (b"offline\n", False), (b"  online\r\n", True)],
)
def test_status_plain_text(body: bytes, online: bool) -> None:
    assert one(STATUS, body) == DeviceStatus(CITY, "cgt-0042", online, NOW, NOW, False)


def test_status_retained_flag_is_kept() -> None:
    status = one(STATUS, b"offline", retained=True)
    assert status == DeviceStatus(CITY, "cgt-0042", False, NOW, NOW, retained=True)


@pytest.mark.parametrize(("text", "online"), [("online", True), ("offline", False)])
def test_status_json(text: str, online: bool) -> None:
    status = one(STATUS, {"status": text, "ts": TS_TEXT})
    assert status == DeviceStatus(CITY, "cgt-0042", online, TS, NOW)


def test_status_json_without_ts_uses_the_receive_time() -> None:
    # Documented leniency (docs/protocol.md §3.3 and §9): the schema requires ts, citywatch not.
    assert one(STATUS, {"status": "online"}) == DeviceStatus(CITY, "cgt-0042", True, NOW, NOW)


# -- shifts -------------------------------------------------------------------------------

SHIFT_START = {
    "ts": "2026-11-22T10:15:00+08:00",
    "action": "start",
    "device": "cgt-0042",
    "grids": ["321202001002005", "321202001002006"],
    "lead": "INS0020",
    "role": "inspector",
}
SHIFT_TS = 1795313700.0


def test_shift_start() -> None:
    assert one(SHIFT, SHIFT_START) == ShiftEvent(
        CITY, "INS0042", SHIFT_TS, "start", NOW, device="cgt-0042",
        grids=("321202001002005", "321202001002006"), lead="INS0020", role="inspector",
    )  # fmt: skip


def test_shift_start_enforcer_with_one_grid() -> None:
    body = dict(SHIFT_START, role="enforcer", grids=["321202001002005"])
    event = one(SHIFT, body)
    assert isinstance(event, ShiftEvent)
    assert (event.role, event.grids) == ("enforcer", ("321202001002005",))


@pytest.mark.parametrize("action", ["end", "break_start", "break_end"])
def test_shift_end_and_breaks(action: str) -> None:
    assert one(SHIFT, {"ts": SHIFT_TS, "action": action}) == ShiftEvent(
        CITY, "INS0042", SHIFT_TS, action, NOW
    )


def test_shift_details_are_ignored_on_end() -> None:
    # docs/protocol.md §3.4: on end and breaks, device, grids, lead and role are not checked.
    body = {"ts": SHIFT_TS, "action": "end", "device": "not an id", "grids": [], "role": "x"}
    assert one(SHIFT, body) == ShiftEvent(CITY, "INS0042", SHIFT_TS, "end", NOW)


# -- case events -------------------------------------------------------------------------


@pytest.mark.parametrize("event", sorted(CASE_EVENTS))
def test_every_case_event(event: str) -> None:
    body: dict[str, Any] = {"ts": TS_TEXT, "event": event}
    if event == "extended":
        body["extend"] = "2h"
    record = one(CASE, body)
    assert record == CaseEvent(CITY, "3212002026112200417", TS, event, NOW,
                               extend=7200.0 if event == "extended" else None)  # fmt: skip


def test_case_event_full() -> None:
    body = {"ts": TS, "event": "dispatched", "category": "0101", "urgent": True,
            "grid": "321202001002005", "unit": "hl-water-supply", "lat": 32.45, "lon": 119.92,
            "officer": "INS0311"}  # fmt: skip
    assert one(CASE, body) == CaseEvent(CITY, "3212002026112200417", TS, "dispatched", NOW,
                                        category="0101", urgent=True, grid="321202001002005",
                                        unit="hl-water-supply", lat=32.45, lon=119.92,
                                        officer="INS0311")  # fmt: skip


@pytest.mark.parametrize(
    ("extend", "seconds"),
    [("30s", 30.0), ("15m", 900.0), ("1d", 86400.0), ("1h30m", 5400.0), (7200, 7200.0),
     (0.5, 0.5), ("366d", 366 * 86400.0)],
)  # fmt: skip
def test_case_extend_forms(extend: object, seconds: float) -> None:
    event = one(CASE, {"ts": TS, "event": "extended", "extend": extend})
    assert event.extend == seconds  # type: ignore[union-attr]


# -- OwnTracks ---------------------------------------------------------------------------


def test_owntracks_location() -> None:
    body = {"_type": "location", "tid": "42", "tst": 1795313730, "lat": 32.448301,
            "lon": 119.911042, "acc": 12, "vel": 36, "cog": 87, "batt": 81, "alt": 8,
            "conn": "m", "t": "u"}  # fmt: skip
    expected = Fix(CITY, "ot-alice", 1795313730.0, 32.448301, 119.911042, NOW, acc=12.0,
                   speed=10.0, heading=87.0, alt=8.0, battery=81.0, source="owntracks")  # fmt: skip
    assert one(OWNTRACKS, body) == expected


def test_owntracks_location_minimal() -> None:
    body = {"_type": "location", "tst": 1795313730, "lat": 32.448301, "lon": 119.911042}
    assert one(OWNTRACKS, body) == Fix(
        CITY, "ot-alice", 1795313730.0, 32.448301, 119.911042, NOW, source="owntracks"
    )


def test_owntracks_lwt_is_offline_at_receipt() -> None:
    status = one(OWNTRACKS, {"_type": "lwt", "tst": 1795300000})
    assert status == DeviceStatus(CITY, "ot-alice", False, NOW, NOW)


# -- batches -----------------------------------------------------------------------------


def test_a_mixed_batch_keeps_message_order_and_counts_by_kind() -> None:
    out, registry = decode(
        Incoming(GPS, payload([{"ts": TS, "lat": 32.4, "lon": 119.9}] * 3), NOW),
        Incoming(HEARTBEAT, payload({"ts": TS}), NOW),
        Incoming(STATUS, b"online", NOW),
        Incoming(f"citywatch/{CITY}/deadletter", b"{}", NOW),
        Incoming(SHIFT, payload({"ts": TS, "action": "end"}), NOW),
        Incoming(CASE, payload({"ts": TS, "event": "closed"}), NOW),
        Incoming(GPS, payload({"ts": TS, "lat": 32.5, "lon": 119.9}), NOW),
        Incoming(OWNTRACKS, payload({"_type": "lwt"}), NOW),
    )
    assert [type(r).__name__ for r in out.records] == [
        "Fix", "Fix", "Fix", "Heartbeat", "DeviceStatus", "ShiftEvent", "CaseEvent", "Fix",
        "DeviceStatus",
    ]  # fmt: skip
    assert out.deadletters == []
    counts = {"gps": (2, 4), "heartbeat": (1, 1), "status": (1, 1), "shift": (1, 1),
              "case": (1, 1), "owntracks": (1, 1)}  # fmt: skip
    for kind, (received, accepted) in counts.items():
        labels = {"kind": kind}
        assert registry.get_sample_value("citywatch_ingest_received_total", labels) == received
        assert registry.get_sample_value("citywatch_ingest_accepted_total", labels) == accepted


def test_metrics_accumulate_over_batches() -> None:
    registry = CollectorRegistry()
    decoder = BatchDecoder(CFG, Router(), CollectorMetrics(registry))
    for _ in range(3):
        decoder.decode([Incoming(HEARTBEAT, payload({"ts": TS}), NOW)])
    labels = {"kind": "heartbeat"}
    assert registry.get_sample_value("citywatch_ingest_received_total", labels) == 3
    assert registry.get_sample_value("citywatch_ingest_accepted_total", labels) == 3


def test_an_empty_batch() -> None:
    out, registry = decode()
    assert out.records == [] and out.deadletters == []
    assert registry.get_sample_value("citywatch_ingest_received_total", {"kind": "gps"}) is None
