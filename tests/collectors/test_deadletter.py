"""The dead-letter message: encoding and truncation of the payload, and the published examples."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.topics import Router
from citywatch.deadletter import (
    MAX_ELEMENT_DETAIL,
    MAX_ELEMENTS,
    deadletter_payload,
    elements_deadletter_payload,
)
from citywatch.models import Rejected

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples" / "deadletter").glob("valid-*.json"))
NOW = 1795313731.0
TOPIC = "citywatch/321200/devices/cgt-0042/heartbeat"
REJ = Rejected(
    "heartbeat", "bad_utf8", "payload is not valid UTF-8 at byte 3", TOPIC, NOW, "321200"
)
VALIDATOR = Draft202012Validator(
    json.loads((SCHEMAS / "deadletter.json").read_text(encoding="utf-8")),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


def letter(payload: bytes, max_bytes: int = 4096, rej: Rejected = REJ) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(deadletter_payload(rej, payload, max_bytes))
    errors = [e.message for e in VALIDATOR.iter_errors(doc)]
    assert not errors, errors
    return doc


def test_fields() -> None:
    doc = letter(b'{"ts": 1}', rej=REJ._replace(reason="out_of_range", detail="x: y"))
    assert doc == {
        "reason": "out_of_range",
        "detail": "x: y",
        "topic": TOPIC,
        "received_at": "2026-11-22T02:15:31.000+00:00",
        "payload": '{"ts": 1}',
        "payload_encoding": "utf-8",
        "size": 9,
        "truncated": False,
    }


def test_index_of_an_array_element() -> None:
    doc = letter(b"[]", rej=REJ._replace(element=0))
    assert doc["index"] == 0


def test_refused_elements_are_counted_and_the_first_few_detailed() -> None:
    refused = [
        REJ._replace(reason="out_of_range", detail="lat: " + "9" * 500, element=i)
        for i in range(0, 100, 2)
    ]
    doc = orjson.loads(elements_deadletter_payload(refused, b"[]", 4096))
    assert not list(VALIDATOR.iter_errors(doc))
    assert (doc["reason"], doc["index"], doc["detail"]) == ("out_of_range", 0, refused[0].detail)
    assert (doc["rejected"], doc["reasons"]) == (50, {"out_of_range": 50})
    assert [e["index"] for e in doc["elements"]] == list(range(0, 2 * MAX_ELEMENTS, 2))
    assert {len(e["detail"]) for e in doc["elements"]} == {MAX_ELEMENT_DETAIL}


@pytest.mark.parametrize(
    ("received_at", "text"),
    [
        (NOW + 0.118, "2026-11-22T02:15:31.118+00:00"),
        (NOW + 0.9999, "2026-11-22T02:15:31.999+00:00"),
        (0.0, "1970-01-01T00:00:00.000+00:00"),
    ],
)
def test_received_at_is_utc_with_milliseconds(received_at: float, text: str) -> None:
    assert letter(b"x", rej=REJ._replace(received_at=received_at))["received_at"] == text


def test_text_payload_keeps_unicode() -> None:
    body = '{"app": "城管通 5.3.1"}'.encode()
    doc = letter(body)
    assert (doc["payload"], doc["payload_encoding"], doc["size"]) == (
        body.decode(),
        "utf-8",
        len(body),
    )


def test_bad_utf8_payload_is_base64() -> None:
    body = '{"app": "城管通"}'.encode("gbk")
    doc = letter(body)
    assert doc["payload_encoding"] == "base64"
    assert base64.b64decode(doc["payload"]) == body
    assert (doc["size"], doc["truncated"]) == (len(body), False)


def test_payload_at_the_limit_is_not_truncated() -> None:
    doc = letter(b"x" * 64, 64)
    assert (doc["payload"], doc["truncated"], doc["size"]) == ("x" * 64, False, 64)


def test_long_payload_is_truncated() -> None:
    body = b'{"ts": 1795313730, "app": "' + b"y" * 200 + b'"}'
    doc = letter(body, 64)
    assert doc["payload"] == body[:64].decode()
    assert (doc["truncated"], doc["size"], doc["payload_encoding"]) == (True, len(body), "utf-8")


@pytest.mark.parametrize("cut", [1, 2])
def test_truncation_inside_a_character_keeps_whole_characters(cut: int) -> None:
    body = ("城" * 40).encode()  # 3 bytes each
    doc = letter(body, 30 + cut)
    assert doc["payload"] == "城" * 10
    assert doc["payload_encoding"] == "utf-8"
    assert (doc["truncated"], doc["size"]) == (True, 120)


def test_truncation_inside_a_four_byte_character() -> None:
    body = ("a" + "😀" * 20).encode()
    doc = letter(body, 1 + 4 * 5 + 3)
    assert doc["payload"] == "a" + "😀" * 5


def test_truncated_bad_utf8_is_base64_of_the_first_bytes() -> None:
    body = "城管通".encode("gbk") * 30
    doc = letter(body, 16)
    assert doc["payload_encoding"] == "base64"
    assert base64.b64decode(doc["payload"]) == body[:16]
    assert (doc["truncated"], doc["size"]) == (True, len(body))


def test_an_invalid_byte_just_before_the_cut_is_not_hidden() -> None:
    body = b'{"app": "' + b"x" * 53 + b"\xff" + b"z" * 100 + b'"}'
    assert body.index(b"\xff") == 62
    doc = letter(body, 64)
    assert doc["payload_encoding"] == "base64"
    assert base64.b64decode(doc["payload"]) == body[:64]


# -- the published examples are what citywatch publishes ------------------------------------


def _example_message(doc: dict[str, Any]) -> bytes:
    if doc["payload_encoding"] == "base64":
        body = base64.b64decode(doc["payload"])
    else:
        body = doc["payload"].encode()
    if doc["truncated"]:
        body += b" " * (doc["size"] - len(body))
    return body


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_reproduced_by_the_decoder(path: Path) -> None:
    example = json.loads(path.read_text(encoding="utf-8"))
    received_at = datetime.fromisoformat(example["received_at"]).timestamp()
    decoder = BatchDecoder(IngestConfig(), Router(), CollectorMetrics(CollectorRegistry()))
    out = decoder.decode([Incoming(example["topic"], _example_message(example), received_at)])
    ((topic, raw),) = out.deadletters
    assert topic == "citywatch/321200/deadletter"
    produced = orjson.loads(raw)
    # `detail` is for people and worded freely; everything else must match.
    for key in ("reason", "topic", "payload", "payload_encoding", "size", "truncated"):
        assert produced[key] == example[key], key
    for key in ("index", "rejected", "reasons"):
        assert produced.get(key) == example.get(key), key
    assert [(e["index"], e["reason"]) for e in produced.get("elements", [])] == [
        (e["index"], e["reason"]) for e in example.get("elements", [])
    ]
    assert datetime.fromisoformat(produced["received_at"]) == datetime.fromisoformat(
        example["received_at"]
    )
