"""The kinds table (collectors/registry.py) and the record types: every part present.

A message kind is declared once, as a row of ``KINDS``; a record type once, in
citywatch/models.py with its encoder in ``ENCODERS``. These tests enumerate both and
fail, naming what to add, when a kind lacks its decoder, a record its encoder, a
schema its examples, or the docs their rows (docs/architecture.md).
"""

from __future__ import annotations

import inspect
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from prometheus_client import CollectorRegistry

from citywatch import models, topics
from citywatch.collectors.config import IngestConfig, OwnTracksConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.registry import COLLECTORS, KINDS, Kind
from citywatch.collectors.topics import Router
from citywatch.influx.schema import ENCODERS, to_line
from citywatch.models import Record, Rejected
from citywatch.topics import TopicPattern

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
SCHEMA_DOC = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")

CITY = "321200"
# A value for every placeholder of the contract's topics.
IDS = {"city": CITY, "device": "cgt-0042", "officer": "INS0042", "case": "C1", "receiver": "l1"}
IDS["user"] = "wangli"
CFG = IngestConfig(owntracks=OwnTracksConfig(city=CITY, devices={"wangli/cgt-0042": "cgt-0042"}))
ROOTS = {"root": "citywatch", "owntracks_root": "owntracks"}

RECORD_TYPES = [
    obj
    for _, obj in inspect.getmembers(models, inspect.isclass)
    if obj.__module__ == models.__name__ and issubclass(obj, tuple) and hasattr(obj, "_fields")
]
INBOUND = [k for k in KINDS if k.inbound]


def kind_id(kind: Kind) -> str:
    return kind.name


def topic_of(kind: Kind, roots: dict[str, str] = ROOTS) -> str:
    return kind.topic.fill(roots[kind.topic.root_key], *(IDS[p] for p in kind.topic.placeholders))


def documented(pattern: TopicPattern) -> str:
    """The pattern as docs/protocol.md writes it: the default roots, placeholders in braces."""
    first = "{" + pattern.root_key + "}"
    return pattern.template.replace(first, ROOTS[pattern.root_key], 1)


def test_names_topics_and_schemas_are_unique() -> None:
    for part in ("name", "topic", "schema"):
        values = [getattr(k, part) for k in KINDS]
        assert len(values) == len(set(values)), f"two kinds share a {part}: {values}"


def test_every_topic_pattern_belongs_to_a_kind() -> None:
    declared = {v for v in vars(topics).values() if isinstance(v, TopicPattern)}
    assert declared == {k.topic for k in KINDS}, "add a row to KINDS for each topic pattern"


def test_the_dispatch_table_is_the_kinds_table() -> None:
    assert {k.name: k.decoder for k in INBOUND} == COLLECTORS


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_kind_has_records_of_the_record_union(kind: Kind) -> None:
    assert kind.records, f"{kind.name}: name the record types it becomes"
    for record in kind.records:
        assert record in get_args(Record), f"{record.__name__}: add it to models.Record"


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_kind_has_a_schema_with_examples(kind: Kind) -> None:
    schema = SCHEMAS / f"{kind.schema}.json"
    assert schema.is_file(), f"{kind.name}: add {schema.relative_to(ROOT)}"
    examples = [p.name for p in (SCHEMAS / "examples" / kind.schema).glob("*.json")]
    assert any(n.startswith("valid-") for n in examples), f"{kind.name}: no valid-*.json"
    assert any(n.startswith("invalid-") for n in examples), f"{kind.name}: no invalid-*.json"


def test_every_schema_belongs_to_a_kind() -> None:
    assert {p.stem for p in SCHEMAS.glob("*.json")} == {k.schema for k in KINDS}


def topics_table() -> list[list[str]]:
    """The rows of docs/protocol.md §2, split into cells."""
    section = PROTOCOL.split("## 2. Topics", 1)[1].split("\n## ", 1)[0]
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_kind_is_documented_in_protocol_md(kind: Kind) -> None:
    rows = [r for r in topics_table() if r[0] == f"`{documented(kind.topic)}`"]
    assert rows, f"{kind.name}: add `{documented(kind.topic)}` to docs/protocol.md §2"
    (row,) = rows
    assert row[1] == ("to citywatch" if kind.inbound else "from citywatch"), row
    assert f"(../schemas/{kind.schema}.json)" in row[-1], f"{kind.name}: link its schema"
    assert re.search(rf"^\| .* \| \[`schemas/{kind.schema}\.json`\]", PROTOCOL, re.M), (
        f"{kind.name}: add its schema to docs/protocol.md §9"
    )


def test_every_documented_topic_is_a_kind() -> None:
    kinds = {f"`{documented(k.topic)}`" for k in KINDS}
    assert {r[0] for r in topics_table()} == kinds


def test_the_rejection_kinds_are_documented() -> None:
    tag = re.search(r"^\| `kind` \| (.*) \|$", SCHEMA_DOC, re.M)
    metric = re.search(r"where `kind` is the kind of message \((.*?)\)", PROTOCOL, re.S)
    assert tag and metric
    for kind in INBOUND:
        assert f"`{kind.name}`" in tag.group(1), f"docs/schema.md: `kind` tag lacks {kind.name}"
        assert f"`{kind.name}`" in metric.group(1), f"docs/protocol.md §5 lacks {kind.name}"
    count = re.search(r"^\| `kind` \| (\d+) values \|$", SCHEMA_DOC, re.M)
    assert count and int(count.group(1)) == len(INBOUND) + 1, "kinds and `unknown`"


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@pytest.mark.parametrize("roots", [ROOTS, {"root": "cw", "owntracks_root": "ot"}])
def test_the_router_finds_the_kind_of_its_topic(kind: Kind, roots: dict[str, str]) -> None:
    router = Router(roots["root"], roots["owntracks_root"])
    route = router.route(topic_of(kind, roots))
    if not kind.inbound:
        assert route is None, "the service's own output is skipped"
        return
    ids = [IDS[p] for p in kind.topic.placeholders if p != "city"]
    city = CITY if "city" in kind.topic.placeholders else ""
    assert route == Route(kind.name, city, "/".join(ids))


def test_the_router_refuses_a_kind_in_an_output_section() -> None:
    echo = TopicPattern("{root}/{city}/alerts/{receiver}/echo")
    clash = Kind("echo", echo, lambda *a: [], (), "echo")
    with pytest.raises(ValueError, match="alerts"):
        Router(kinds=(*KINDS, clash))


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        dt = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return dt.timestamp() if dt is not None and dt.tzinfo is not None else None


@pytest.mark.parametrize("kind", INBOUND, ids=kind_id)
def test_valid_examples_decode_to_the_kinds_records(kind: Kind) -> None:
    decoder = BatchDecoder(CFG, Router(), CollectorMetrics(CollectorRegistry()))
    paths = sorted((SCHEMAS / "examples" / kind.schema).glob("valid-*.json"))
    for path in paths:
        body = json.loads(path.read_bytes())
        items = body if isinstance(body, list) else [body]
        stamps = [_epoch(i.get(k)) for i in items for k in ("ts", "tst")]
        now = max((t for t in stamps if t is not None), default=1795313730.0) + 1.0
        records = decoder.decode([Incoming(topic_of(kind), path.read_bytes(), now)]).records
        refused = [(r.reason, r.detail) for r in records if type(r) is Rejected]
        assert records and not refused, (path.name, refused)
        strays = {type(r).__name__ for r in records} - {t.__name__ for t in kind.records}
        assert not strays, f"{kind.name}: {path.name} decodes to {strays}, not in its row"


def test_the_record_union_is_every_record_type() -> None:
    assert set(get_args(Record)) == set(RECORD_TYPES)


_SAMPLE: dict[Any, Any] = {str: "x1", float: 1795313730.25, int: 1, bool: True}


def sample(record: type) -> Any:
    """A record of ``record`` with its required fields filled in by type."""
    hints = get_type_hints(record)
    required = [f for f in record._fields if f not in record._field_defaults]  # type: ignore[attr-defined]
    missing = [f for f in required if hints[f] not in _SAMPLE]
    assert not missing, f"{record.__name__}: give _SAMPLE a value for {missing}"
    return record(**{f: _SAMPLE[hints[f]] for f in required})


@pytest.mark.parametrize("record", RECORD_TYPES, ids=lambda r: r.__name__)
def test_record_type_has_an_encoder_and_a_measurement_row(record: type) -> None:
    assert record in ENCODERS, f"{record.__name__}: add its encoder to influx/schema.py ENCODERS"
    line = to_line(sample(record))
    measurement = re.split(r"(?<!\\)[, ]", line, maxsplit=1)[0]
    row = rf"^\| `{re.escape(measurement)}` \| `{record.__name__}` \|"
    assert re.search(row, SCHEMA_DOC, re.M), (
        f"docs/schema.md: add the row | `{measurement}` | `{record.__name__}` | ..."
    )
    assert f"### `{measurement}`" in SCHEMA_DOC, f"docs/schema.md: describe `{measurement}`"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (topics.gps_topic("cw", CITY, "d1"), "cw/321200/devices/d1/gps"),
        (topics.heartbeat_topic("cw", CITY, "d1"), "cw/321200/devices/d1/heartbeat"),
        (topics.status_topic("cw", CITY, "d1"), "cw/321200/devices/d1/status"),
        (topics.shift_topic("cw", CITY, "o1"), "cw/321200/officers/o1/shift"),
        (topics.case_events_topic("cw", CITY, "C1"), "cw/321200/cases/C1/events"),
        (topics.ack_topic("cw", CITY, "l1"), "cw/321200/acks/l1"),
        (topics.owntracks_topic("ot", "wangli", "phone"), "ot/wangli/phone"),
        (topics.deadletter_topic("cw", CITY), "cw/321200/deadletter"),
        (topics.deadletter_topic("cw", None), "cw/unknown/deadletter"),
        (topics.alert_topic("cw", CITY, "l1"), "cw/321200/alerts/l1"),
        (topics.root_filter("cw"), "cw/#"),
        (topics.root_filter("cw", CITY), "cw/321200/#"),
        (topics.OWNTRACKS.filter("ot"), "ot/+/+"),
        (topics.ALERT.filter("cw", city=CITY), "cw/321200/alerts/+"),
        (topics.DEADLETTER.filter("cw"), "cw/+/deadletter"),
    ],
)
def test_topic_builders(topic: str, expected: str) -> None:
    assert topic == expected


def test_topic_patterns_refuse_what_the_router_could_not_walk() -> None:
    for bad in ("citywatch/{city}/x", "{root}", "{root}/{city}/Dev ices", "{root}/{a}/{a}"):
        with pytest.raises(ValueError):
            TopicPattern(bad)
    with pytest.raises(TypeError):
        topics.GPS.fill("cw", CITY)
    with pytest.raises(TypeError):
        topics.GPS.filter("cw", officer="o1")
