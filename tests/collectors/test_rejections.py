"""Every rejection reason, from a realistic message, with its dead letter and its metrics."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder, Decoded
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.reject import REASONS
from citywatch.collectors.topics import Route, Router
from citywatch.models import Fix, Record, Rejected
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

DEADLETTER_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "deadletter.json"
START = {"ts": TS, "action": "start", "device": "cgt-0042", "grids": ["321202001002005"],
         "lead": "INS0020", "role": "inspector"}  # fmt: skip
FIX = {"ts": TS, "lat": 32.455512, "lon": 119.922874}
LOCATION = {"_type": "location", "tst": 1795313730, "lat": 32.448301, "lon": 119.911042}


class Case(NamedTuple):
    topic: str
    body: Any  # bytes as they are, anything else as JSON
    reason: str
    named: str  # what the detail must mention (the field, mostly)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base, **changes)
    return {k: v for k, v in out.items() if v is not ...}


GBK_APP = b'{"ts":"2026-11-22T10:16:00+08:00","app":"' + "城管通 5.3.1".encode("gbk") + b'"}'

CASES: dict[str, Case] = {
    "too-large": Case(GPS, b"[" + b" " * 70_000 + b"]", "payload_too_large", "bytes"),
    "too-large-heartbeat": Case(HEARTBEAT, b'{"ts": 1, "app": "' + b"x" * 66_000 + b'"}',
                                "payload_too_large", "65536"),
    "utf8-in-string": Case(HEARTBEAT, b'{"ts": "\xff"}', "bad_utf8", "UTF-8"),
    "utf8-gbk": Case(HEARTBEAT, GBK_APP, "bad_utf8", "UTF-8"),
    "json-cut-off": Case(GPS, b'{"ts": 1795313730, "lat": 32.4,', "malformed_json", "JSON"),
    "json-single-quotes": Case(HEARTBEAT, b"{'ts': 1795313730}", "malformed_json", "JSON"),
    "json-trailing-comma": Case(HEARTBEAT, b'{"ts": 1795313730,}', "malformed_json", "JSON"),
    "json-nan": Case(GPS, b'{"ts": 1795313730, "lat": NaN, "lon": 1}', "malformed_json", "JSON"),
    "json-empty": Case(CASE, b"", "malformed_json", "JSON"),
    "status-shouting": Case(STATUS, b"ONLINE", "malformed_json", "JSON"),
    "lat-string": Case(GPS, with_(FIX, lat="32.455512"), "wrong_type", "lat"),
    "battery-bool": Case(HEARTBEAT, {"ts": TS, "battery": True}, "wrong_type", "battery"),
    "charging-string": Case(HEARTBEAT, {"ts": TS, "charging": "true"}, "wrong_type", "charging"),
    "ts-bool": Case(HEARTBEAT, {"ts": True}, "wrong_type", "ts"),
    "gps-string": Case(GPS, "32.455512,119.922874", "wrong_type", "gps"),
    "status-quoted": Case(STATUS, '"online"', "wrong_type", "status"),
    "seq-fraction": Case(GPS, with_(FIX, seq=10452.5), "wrong_type", "seq"),
    "extend-words": Case(CASE, {"ts": TS, "event": "extended", "extend": "two days"},
                         "wrong_type", "extend"),
    "urgent-string": Case(CASE, {"ts": TS, "event": "filed", "urgent": "true"}, "wrong_type",
                          "urgent"),
    "grids-string": Case(SHIFT, with_(START, grids="321202001002005"), "wrong_type", "grids"),
    "no-ts": Case(GPS, with_(FIX, ts=...), "missing_field", "ts"),
    "ts-null": Case(HEARTBEAT, {"ts": None}, "missing_field", "ts"),
    "no-lon": Case(GPS, with_(FIX, lon=...), "missing_field", "lon"),
    "empty-array": Case(GPS, [], "missing_field", "empty"),
    "start-no-grids": Case(SHIFT, with_(START, grids=...), "missing_field", "grids"),
    "start-no-lead": Case(SHIFT, with_(START, lead=...), "missing_field", "lead"),
    "no-action": Case(SHIFT, {"ts": TS}, "missing_field", "action"),
    "no-event": Case(CASE, {"ts": TS, "category": "0101"}, "missing_field", "event"),
    "extended-no-extend": Case(CASE, {"ts": TS, "event": "extended"}, "missing_field", "extend"),
    "case-lat-only": Case(CASE, {"ts": TS, "event": "reported", "lat": 32.4}, "missing_field",
                          "lon"),
    "status-no-status": Case(STATUS, {"ts": TS}, "missing_field", "status"),
    "owntracks-no-tst": Case(OWNTRACKS, with_(LOCATION, tst=...), "missing_field", "tst"),
    "lat-95": Case(GPS, with_(FIX, lat=95.0), "out_of_range", "lat"),
    "lon-minus-181": Case(GPS, with_(FIX, lon=-181), "out_of_range", "lon"),
    "null-island": Case(GPS, with_(FIX, lat=0, lon=0.0), "out_of_range", "lat/lon"),
    "acc-negative": Case(GPS, with_(FIX, acc=-1), "out_of_range", "acc"),
    "speed-negative": Case(GPS, with_(FIX, speed=-0.5), "out_of_range", "speed"),
    "heading-361": Case(GPS, with_(FIX, heading=361), "out_of_range", "heading"),
    "seq-negative": Case(GPS, with_(FIX, seq=-1), "out_of_range", "seq"),
    "battery-120": Case(HEARTBEAT, {"ts": TS, "battery": 120}, "out_of_range", "battery"),
    "signal-positive": Case(HEARTBEAT, {"ts": TS, "signal": 12}, "out_of_range", "signal"),
    "app-too-long": Case(HEARTBEAT, {"ts": TS, "app": "5" * 65}, "out_of_range", "app"),
    "app-control-char": Case(HEARTBEAT, {"ts": TS, "app": "5.3\n"}, "out_of_range", "app"),
    "grids-empty": Case(SHIFT, with_(START, grids=[]), "out_of_range", "grids"),
    "extend-zero": Case(CASE, {"ts": TS, "event": "extended", "extend": "0h"}, "out_of_range",
                        "extend"),
    "extend-negative": Case(CASE, {"ts": TS, "event": "extended", "extend": -3600},
                            "out_of_range", "extend"),
    "owntracks-null-island": Case(OWNTRACKS, with_(LOCATION, lat=0, lon=0), "out_of_range",
                                  "lat/lon"),
    "owntracks-vel-negative": Case(OWNTRACKS, with_(LOCATION, vel=-1), "out_of_range", "vel"),
    "naive-ts": Case(GPS, with_(FIX, ts="2026-11-22T10:15:30"), "bad_timestamp", "ts"),
    "garbage-ts": Case(HEARTBEAT, {"ts": "garbage"}, "bad_timestamp", "ts"),
    "slashed-ts": Case(HEARTBEAT, {"ts": "2026/11/22 10:16:00"}, "bad_timestamp", "ts"),
    "date-only-ts": Case(SHIFT, with_(START, ts="2026-11-22"), "bad_timestamp", "ts"),
    "epoch-as-text": Case(HEARTBEAT, {"ts": "1795313730"}, "bad_timestamp", "ts"),
    "future-ts": Case(GPS, with_(FIX, ts=NOW + 301), "future_timestamp", "ts"),
    "milliseconds": Case(GPS, with_(FIX, ts=int(NOW * 1000)), "future_timestamp", "ts"),
    "stale-ts": Case(GPS, with_(FIX, ts=NOW - 8 * 86400), "stale_timestamp", "ts"),
    "stale-rfc3339": Case(CASE, {"ts": "2026-11-14T10:00:00+08:00", "event": "closed"},
                          "stale_timestamp", "ts"),
    "owntracks-stale": Case(OWNTRACKS, with_(LOCATION, tst=1790000000), "stale_timestamp",
                            "tst"),
    "topic-leaf": Case(f"citywatch/{CITY}/devices/cgt-0042/location", FIX, "unknown_topic",
                       "topic"),
    "topic-short": Case(f"citywatch/{CITY}", FIX, "unknown_topic", "topic"),
    "topic-root": Case("telemetry/321200/devices/cgt-0042/gps", FIX, "unknown_topic", "topic"),
    "city-5-digits": Case("citywatch/12345/devices/cgt-0042/gps", FIX, "bad_id", "city"),
    "device-with-space": Case(f"citywatch/{CITY}/devices/cgt 0042/gps", FIX, "bad_id", "id"),
    "officer-field": Case(CASE, {"ts": TS, "event": "verified", "officer": "a b"}, "bad_id",
                          "officer"),
    "lead-field": Case(SHIFT, with_(START, lead="wang lei"), "bad_id", "lead"),
    "unit-field": Case(CASE, {"ts": TS, "event": "dispatched", "unit": "水务"}, "bad_id",
                       "unit"),
    "device-field": Case(SHIFT, with_(START, device="cgt/0042"), "bad_id", "device"),
    "grid-code": Case(SHIFT, with_(START, grids=["321202001002"]), "bad_id", "grids"),
    "case-grid": Case(CASE, {"ts": TS, "event": "filed", "grid": "32120200100200X"}, "bad_id",
                      "grid"),
    "category": Case(CASE, {"ts": TS, "event": "filed", "category": "01-01"}, "bad_id",
                     "category"),
    "crs": Case(GPS, with_(FIX, crs="cgcs2000"), "unknown_value", "crs"),
    "crs-case": Case(CASE, {"ts": TS, "event": "reported", "lat": 32.4, "lon": 119.9,
                            "crs": "GCJ02"}, "unknown_value", "crs"),
    "action": Case(SHIFT, {"ts": TS, "action": "pause"}, "unknown_value", "action"),
    "role": Case(SHIFT, with_(START, role="driver"), "unknown_value", "role"),
    "event": Case(CASE, {"ts": TS, "event": "opened"}, "unknown_value", "event"),
    "status": Case(STATUS, {"status": "away", "ts": TS}, "unknown_value", "status"),
    "too-many-fixes": Case(GPS, [FIX] * 1001, "too_many_fixes", "1001"),
    "unmapped-owntracks": Case("owntracks/bob/phone", LOCATION, "unknown_device", "bob/phone"),
    "owntracks-transition": Case(OWNTRACKS, with_(LOCATION, _type="transition"),
                                 "unsupported_type", "_type"),
    "owntracks-encrypted": Case(OWNTRACKS, {"_type": "encrypted", "data": "c2VjcmV0"},
                                "unsupported_type", "_type"),
    "owntracks-no-type": Case(OWNTRACKS, with_(LOCATION, _type=...), "unsupported_type",
                              "_type"),
}  # fmt: skip


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


def kind_of(topic: str) -> str:
    try:
        route = Router().route(topic)
    except Exception:
        return "unknown"
    assert route is not None
    return route.kind


def run(msgs: list[Incoming], cfg: IngestConfig = CFG, **kw: Any) -> tuple[Decoded, Any]:
    registry = CollectorRegistry()
    out = BatchDecoder(cfg, Router(), CollectorMetrics(registry), **kw).decode(msgs)
    return out, registry.get_sample_value


@cache
def deadletter_validator() -> Draft202012Validator:
    schema = json.loads(DEADLETTER_SCHEMA.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_every_reason_has_a_realistic_case() -> None:
    produced = {c.reason for c in CASES.values()}
    # internal_error means a bug in citywatch: no valid or invalid message should cause it.
    # impossible_transition comes from the case rule (tests/rules), not from a decoder;
    # ack_refused from alerting (tests/alerting/test_alert_acks.py); roster_mismatch from
    # the register of handhelds with a roster (tests/collectors/test_admission.py);
    # influx_refused from the InfluxDB writer (tests/citywatch/test_influx_refused.py).
    late = {"impossible_transition", "ack_refused", "roster_mismatch", "influx_refused"}
    assert produced == set(REASONS) - {"internal_error"} - late


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_rejection(name: str) -> None:
    case = CASES[name]
    payload = raw(case.body)
    out, sample = run([Incoming(case.topic, payload, NOW)])
    kind = kind_of(case.topic)
    city = Router().city_of(case.topic)
    assert city in (CITY, None)

    (record,) = out.records
    assert isinstance(record, Rejected)
    assert (record.kind, record.reason, record.topic, record.received_at, record.city) == (
        kind, case.reason, case.topic, NOW, city
    )  # fmt: skip
    assert record.element is None
    assert case.named in record.detail

    ((dl_topic, dl_payload),) = out.deadletters
    assert dl_topic == f"citywatch/{city or 'unknown'}/deadletter"
    letter = orjson.loads(dl_payload)
    assert letter["reason"] == case.reason
    assert letter["detail"] == record.detail
    assert letter["topic"] == case.topic
    assert datetime.fromisoformat(letter["received_at"]).timestamp() == NOW
    assert "index" not in letter
    assert letter["size"] == len(payload)
    assert letter["truncated"] is (len(payload) > CFG.deadletter_max)
    sent = payload[: CFG.deadletter_max]
    if letter["payload_encoding"] == "base64":
        assert case.reason == "bad_utf8"
        assert base64.b64decode(letter["payload"], validate=True) == sent
    else:
        assert letter["payload_encoding"] == "utf-8"
        assert letter["payload"] == sent.decode("utf-8")
    errors = list(deadletter_validator().iter_errors(letter))
    assert not errors, [e.message for e in errors]

    labels = {"kind": kind, "reason": case.reason}
    assert sample("citywatch_ingest_rejected_total", labels) == 1
    assert sample("citywatch_ingest_received_total", {"kind": kind}) == 1
    assert sample("citywatch_ingest_accepted_total", {"kind": kind}) is None


def test_payload_limit_is_inclusive() -> None:
    body = orjson.dumps({"ts": TS, "app": "x"})
    cfg = IngestConfig(max_payload=len(body))
    out, _ = run([Incoming(HEARTBEAT, body, NOW)], cfg)
    assert out.deadletters == []
    out, _ = run([Incoming(HEARTBEAT, body + b" ", NOW)], cfg)
    assert [r.reason for r in out.records] == ["payload_too_large"]  # type: ignore[union-attr]


def test_batch_limit_follows_the_setting() -> None:
    cfg = IngestConfig(max_batch=2)
    out, _ = run([Incoming(GPS, raw([FIX, FIX]), NOW), Incoming(GPS, raw([FIX] * 3), NOW)], cfg)
    assert [type(r).__name__ for r in out.records] == ["Fix", "Fix", "Rejected"]


def test_timestamp_window_follows_the_settings() -> None:
    cfg = IngestConfig(max_future=0.0, max_age=60.0)
    msgs = [Incoming(GPS, raw(with_(FIX, ts=t)), NOW) for t in (NOW + 1, NOW - 61, NOW - 59)]
    out, _ = run(msgs, cfg)
    reasons = [r.reason if isinstance(r, Rejected) else "ok" for r in out.records]
    assert reasons == ["future_timestamp", "stale_timestamp", "ok"]


# -- GPS arrays: bad elements are rejected one by one ----------------------------------------


def test_bad_elements_of_a_gps_array() -> None:
    body = [
        FIX,
        with_(FIX, lon=...),
        5,
        with_(FIX, lat=95.0),
        with_(FIX, ts=TS + 1),
    ]
    payload = raw(body)
    out, sample = run([Incoming(GPS, payload, NOW)])
    kinds = [type(r).__name__ for r in out.records]
    assert kinds == ["Fix", "Rejected", "Rejected", "Rejected", "Fix"]
    rejected = [r for r in out.records if isinstance(r, Rejected)]
    assert [(r.element, r.reason) for r in rejected] == [
        (1, "missing_field"), (2, "wrong_type"), (3, "out_of_range")
    ]  # fmt: skip
    assert [r.city for r in rejected] == [CITY] * 3
    # One dead letter for the message: the first refused fix, then all of them.
    ((topic, dl),) = out.deadletters
    letter = orjson.loads(dl)
    assert topic == f"citywatch/{CITY}/deadletter"
    assert (letter["index"], letter["reason"]) == (1, "missing_field")
    assert letter["detail"] == rejected[0].detail
    assert letter["rejected"] == 3
    assert letter["reasons"] == {"missing_field": 1, "wrong_type": 1, "out_of_range": 1}
    assert letter["elements"] == [
        {"index": r.element, "reason": r.reason, "detail": r.detail} for r in rejected
    ]
    assert letter["payload"] == payload.decode()  # the whole message, for context
    assert not list(deadletter_validator().iter_errors(letter))
    assert sample("citywatch_ingest_received_total", {"kind": "gps"}) == 1
    assert sample("citywatch_ingest_accepted_total", {"kind": "gps"}) == 2
    for reason in ("missing_field", "wrong_type", "out_of_range"):
        assert sample("citywatch_ingest_rejected_total", {"kind": "gps", "reason": reason}) == 1


def test_an_array_of_only_bad_fixes() -> None:
    out, sample = run([Incoming(GPS, raw([with_(FIX, lat=95.0)] * 2), NOW)])
    # Stored as one point per reason, counting the refused fixes (the first one's index).
    assert [(r.element, r.total) for r in out.records] == [(0, 2)]  # type: ignore[union-attr]
    assert sample("citywatch_ingest_received_total", {"kind": "gps"}) == 1
    assert sample("citywatch_ingest_accepted_total", {"kind": "gps"}) is None
    labels = {"kind": "gps", "reason": "out_of_range"}
    assert sample("citywatch_ingest_rejected_total", labels) == 2


@pytest.mark.parametrize(
    "bad",
    [5, with_(FIX, lat=95.0)],
    ids=["2-KB-of-non-objects", "55-KB-of-bad-fixes"],
)
def test_a_thousand_bad_fixes_make_one_bounded_dead_letter(bad: Any) -> None:
    # 998 bad elements, one more bad for another reason, one good fix: 1,000 in all.
    payload = raw([bad] * 998 + [with_(FIX, lon=...), FIX])
    reason = "wrong_type" if bad == 5 else "out_of_range"
    out, sample = run([Incoming(GPS, payload, NOW)])
    # The valid fix is kept, every bad one is counted, stored as one point per reason...
    assert [r for r in out.records if type(r) is Fix] == [out.records[-1]]
    stored = [(r.element, r.reason, r.total) for r in out.records if isinstance(r, Rejected)]
    assert stored == [(0, reason, 998), (998, "missing_field", 1)]
    assert sample("citywatch_ingest_rejected_total", {"kind": "gps", "reason": reason}) == 998
    labels = {"kind": "gps", "reason": "missing_field"}
    assert sample("citywatch_ingest_rejected_total", labels) == 1
    assert sample("citywatch_ingest_accepted_total", {"kind": "gps"}) == 1
    # ... but the message makes one dead letter, of bounded size.
    ((topic, dl),) = out.deadletters
    assert topic == f"citywatch/{CITY}/deadletter"
    assert len(dl) < 2 * CFG.deadletter_max
    letter = orjson.loads(dl)
    assert (letter["reason"], letter["index"], letter["rejected"]) == (reason, 0, 999)
    assert letter["reasons"] == {reason: 998, "missing_field": 1}
    assert [(e["index"], e["reason"]) for e in letter["elements"]] == [
        (i, reason) for i in range(10)
    ]
    assert letter["size"] == len(payload)
    assert letter["truncated"] is (len(payload) > CFG.deadletter_max)
    assert not list(deadletter_validator().iter_errors(letter))


# -- accounting over a mixed batch -------------------------------------------------------------


def test_a_mixed_batch_counts_every_outcome() -> None:
    msgs = [
        Incoming(GPS, raw(FIX), NOW),
        Incoming(GPS, raw(with_(FIX, lat=95.0)), NOW),
        Incoming(HEARTBEAT, b"{", NOW),
        Incoming("citywatch/321200/devices/x/foo", b"{}", NOW),
        Incoming("nowhere/at/all", b"{}", NOW),
        Incoming(f"citywatch/{CITY}/deadletter", b"ignored", NOW),
        Incoming(f"citywatch/{CITY}/alerts/x", b"ignored", NOW),
        Incoming(OWNTRACKS, raw(LOCATION), NOW),
    ]
    out, sample = run(msgs)
    assert [type(r) for r in out.records] == [Fix, Rejected, Rejected, Rejected, Rejected, Fix]
    assert [t for t, _ in out.deadletters] == [
        f"citywatch/{CITY}/deadletter", f"citywatch/{CITY}/deadletter",
        f"citywatch/{CITY}/deadletter", "citywatch/unknown/deadletter",
    ]  # fmt: skip
    expected = {
        ("citywatch_ingest_received_total", (("kind", "gps"),)): 2,
        ("citywatch_ingest_received_total", (("kind", "heartbeat"),)): 1,
        ("citywatch_ingest_received_total", (("kind", "unknown"),)): 2,
        ("citywatch_ingest_received_total", (("kind", "owntracks"),)): 1,
        ("citywatch_ingest_accepted_total", (("kind", "gps"),)): 1,
        ("citywatch_ingest_accepted_total", (("kind", "owntracks"),)): 1,
        ("citywatch_ingest_accepted_total", (("kind", "heartbeat"),)): None,
        ("citywatch_ingest_rejected_total", (("kind", "gps"), ("reason", "out_of_range"))): 1,
        ("citywatch_ingest_rejected_total", (("kind", "heartbeat"),
                                             ("reason", "malformed_json"))): 1,
        ("citywatch_ingest_rejected_total", (("kind", "unknown"),
                                             ("reason", "unknown_topic"))): 2,
    }  # fmt: skip
    for (name, labels), value in expected.items():
        assert sample(name, dict(labels)) == value, (name, labels)


@pytest.mark.parametrize(
    "topic",
    [
        f"citywatch/{CITY}/deadletter",
        "citywatch/unknown/deadletter",
        f"citywatch/{CITY}/alerts/x",
        f"citywatch/{CITY}/alerts/INS0020",
    ],
)
def test_own_topics_give_no_record_no_dead_letter_and_no_count(topic: str) -> None:
    letter = orjson.dumps({"reason": "out_of_range", "detail": "x", "topic": GPS})
    out, sample = run([Incoming(topic, letter, NOW), Incoming(topic, b"\xff" * 70_000, NOW)])
    assert out.records == [] and out.deadletters == []
    for kind in ("unknown", "gps", "status"):
        assert sample("citywatch_ingest_received_total", {"kind": kind}) is None


# -- a decoder bug is not a message error, but is still dead-lettered --------------------------


def _broken(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    raise ZeroDivisionError("bug")


def test_a_decoder_bug_is_an_internal_error() -> None:
    from citywatch.collectors.registry import COLLECTORS

    decoders = dict(COLLECTORS, case=_broken)
    msgs = [Incoming(CASE, raw({"ts": TS, "event": "closed"}), NOW), Incoming(GPS, raw(FIX), NOW)]
    out, sample = run(msgs, decoders=decoders)
    assert [type(r) for r in out.records] == [Rejected, Fix]
    letter = orjson.loads(out.deadletters[0][1])
    assert letter["reason"] == "internal_error"
    assert "ZeroDivisionError" in letter["detail"]
    assert not list(deadletter_validator().iter_errors(letter))
    labels = {"kind": "case", "reason": "internal_error"}
    assert sample("citywatch_ingest_rejected_total", labels) == 1


def test_largest_seq_is_accepted() -> None:
    out, _ = run([Incoming(GPS, raw(with_(FIX, seq=2**63 - 1)), NOW)])
    assert [r.seq for r in out.records] == [2**63 - 1]  # type: ignore[union-attr]


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_seq_beyond_int64_is_out_of_range(seq: int) -> None:
    out, _ = run([Incoming(GPS, raw(with_(FIX, seq=seq)), NOW)])
    assert [r.reason for r in out.records] == ["out_of_range"]  # type: ignore[union-attr]
