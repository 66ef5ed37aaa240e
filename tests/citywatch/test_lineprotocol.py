"""Line protocol escaping, checked by hand and against a real InfluxDB 1.x."""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from citywatch.influx.lineprotocol import (
    encode,
    escape_measurement,
    escape_name,
    format_field,
    quote_string,
)
from tests.services import Influx

HOSTILE = [
    "a,evil=1 x=1",
    "with space",
    "eq=ual",
    "comma,",
    "lead,=both",
    " leading space",
    "中文城管",
    'quote"d',
    "#hash",
]

# -- a minimal line-protocol reader, to check the structure of what encode() writes --


def _split(text: str, seps: str) -> tuple[str, str, str]:
    """Split at the first unescaped separator."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in seps:
            return text[:i], text[i], text[i + 1 :]
        i += 1
    return text, "", ""


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _tags(head: str) -> tuple[str, dict[str, str]]:
    measurement, sep, tagtext = _split(head, ",")
    tags: dict[str, str] = {}
    while sep:
        pair, sep, tagtext = _split(tagtext, ",")
        k, eq, v = _split(pair, "=")
        assert eq and k and v, f"bad tag {pair!r} in {head!r}"
        tags[_unescape(k)] = _unescape(v)
    return _unescape(measurement), tags


def _fields(text: str) -> tuple[dict[str, str], str]:
    """Fields (values as written) and what follows them."""
    fields: dict[str, str] = {}
    while True:
        key, eq, text = _split(text, "=")
        assert eq and key and not _split(key, " ,")[1], f"bad field key {key!r}"
        i = 0
        if text.startswith('"'):
            i = 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        else:
            while i < len(text) and text[i] not in ", ":
                i += 1
        assert i > 0, f"empty value for {key!r}"
        fields[_unescape(key)] = text[:i]
        sep, text = text[i : i + 1], text[i + 1 :]
        if sep != ",":
            return fields, text


def parse(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """Measurement, tags, field values (as written) and timestamp of one line."""
    assert "\n" not in line and "\r" not in line
    head, _, rest = _split(line, " ")
    measurement, tags = _tags(head)
    fields, ts = _fields(rest)
    return measurement, tags, fields, int(ts)


# -- pure unit tests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("cpu", "cpu"),
        ("my meas", r"my\ meas"),
        ("a,b", r"a\,b"),
        ("a=b", "a=b"),  # equals signs need no escape in a measurement
        ("a\\b", r"a\\b"),
    ],
)
def test_escape_measurement(raw: str, escaped: str) -> None:
    assert escape_measurement(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("device", "device"),
        ("cgt-0042", "cgt-0042"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ("a\\b", r"a\\b"),
        ("end\\", "end\\\\"),
        ("a,evil=1 x=1", r"a\,evil\=1\ x\=1"),
        ("中文", "中文"),
    ],
)
def test_escape_name(raw: str, escaped: str) -> None:
    assert escape_name(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("end\\", '"end\\\\"'),
        ("two\nlines", r'"two\nlines"'),
        ("cr\rlf", r'"cr\rlf"'),
        ("a,b c=d", '"a,b c=d"'),  # commas, spaces and equals are fine inside quotes
        ("", '""'),
    ],
)
def test_quote_string(raw: str, quoted: str) -> None:
    assert quote_string(raw) == quoted


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (1.0, "1.0"),
        (-0.25, "-0.25"),
        (1e16, "1e+16"),
        (32.455512, "32.455512"),
        (0, "0i"),
        (3, "3i"),
        (-7, "-7i"),
        (2**63 - 1, "9223372036854775807i"),
        (True, "true"),
        (False, "false"),
        ("x", '"x"'),
    ],
)
def test_format_field(value: object, text: str) -> None:
    assert format_field(value) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"bytes", 1j])
def test_format_field_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        format_field(value)  # type: ignore[arg-type]


def test_encode_basic() -> None:
    line = encode("gps", {"device": "d1", "city": "321200"}, {"lat": 32.1, "seq": 5}, 123)
    assert line == "gps,city=321200,device=d1 lat=32.1,seq=5i 123"


def test_encode_sorts_tags_and_keeps_field_order() -> None:
    line = encode("m", {"b": "2", "c": "3", "a": "1"}, {"z": 1, "y": 2.0, "x": "s"}, 1)
    assert line == 'm,a=1,b=2,c=3 z=1i,y=2.0,x="s" 1'


def test_encode_drops_none_fields_and_empty_tags() -> None:
    line = encode("m", {"unit": "", "city": "321200"}, {"a": None, "b": 1, "c": None}, 1)
    assert line == "m,city=321200 b=1i 1"


def test_encode_without_tags() -> None:
    assert encode("m", {}, {"f": False}, 0) == "m f=false 0"


@pytest.mark.parametrize("fields", [{}, {"a": None}, {"a": None, "b": None}])
def test_encode_without_fields_is_an_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least one field"):
        encode("m", {"t": "v"}, fields, 1)


def test_encode_escapes_field_keys_and_measurement() -> None:
    line = encode("my m,x", {"t k": "v"}, {"f k=": 1}, 1)
    assert line == r"my\ m\,x,t\ k=v f\ k\==1i 1"
    assert parse(line) == ("my m,x", {"t k": "v"}, {"f k=": "1i"}, 1)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_tag_value_stays_one_tag(value: str) -> None:
    line = encode("gps", {"city": "321200", "device": value}, {"lat": 1.0}, 7)
    assert "\n" not in line
    assert parse(line) == ("gps", {"city": "321200", "device": value}, {"lat": "1.0"}, 7)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_tag_key_and_field_key(value: str) -> None:
    line = encode("m", {value: "v"}, {value: 1}, 7)
    assert parse(line) == ("m", {value: "v"}, {value: "1i"}, 7)


@pytest.mark.parametrize(
    "value",
    [
        'x" y=1',
        'x",evil=1 f=1i 2',
        "first\nm,evil=1 f=1i 2",
        "first\r\nm,evil=1 f=1i 2",
        "trailing\\",
        '\\"',
    ],
)
def test_injection_through_a_string_field(value: str) -> None:
    line = encode("m", {"t": "v"}, {"s": value, "n": 1}, 9)
    assert "\n" not in line and "\r" not in line
    measurement, tags, fields, ts = parse(line)
    assert (measurement, tags, ts) == ("m", {"t": "v"}, 9)
    assert set(fields) == {"s", "n"}
    assert fields["n"] == "1i"


def test_injection_with_a_newline_in_a_tag_value_gives_one_line() -> None:
    line = encode("m", {"device": "x\nm,evil=1 f=1i 2"}, {"f": 1}, 1)
    assert line.count("\n") == 0
    head = _split(line, " ")[0]
    assert set(_tags(head)[1]) == {"device"}


@pytest.mark.parametrize("where", ["tag value", "tag key", "field key", "measurement"])
def test_newline_in_a_name_becomes_an_escaped_space(where: str) -> None:
    bad = "a\nb"
    meas = bad if where == "measurement" else "m"
    tags = {bad: "v"} if where == "tag key" else {"t": bad if where == "tag value" else "v"}
    fields = {bad if where == "field key" else "f": 1}
    measurement, parsed_tags, parsed_fields, _ = parse(encode(meas, tags, fields, 1))
    assert "a b" in (measurement, *parsed_tags, *parsed_tags.values(), *parsed_fields)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_not_written(value: float) -> None:
    try:
        line = encode("m", {}, {"bad": value, "ok": 1}, 1)
    except ValueError:
        return
    assert "bad=" not in line


# -- against a real InfluxDB ----------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write(influx: Influx, db: str, lines: list[str]) -> tuple[int, str]:
    """POST lines to /write; returns the HTTP status and the body."""
    query = urllib.parse.urlencode({"db": db, "precision": "ns"})
    req = urllib.request.Request(
        f"{influx.url}/write?{query}", data="\n".join(lines).encode(), method="POST"
    )
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def tag_keys(influx: Influx, db: str, measurement: str) -> set[str]:
    data = influx.query(f'SHOW TAG KEYS FROM "{measurement}"', db)
    return {row[0] for s in influx._series(data) for row in s.get("values", [])}


def field_keys(influx: Influx, db: str, measurement: str) -> set[str]:
    data = influx.query(f'SHOW FIELD KEYS FROM "{measurement}"', db)
    return {row[0] for s in influx._series(data) for row in s.get("values", [])}


STRINGS = [
    'say "hi"',
    "back\\slash",
    "end\\",
    '\\"',
    "a,b c=d",
    'x",evil=1 f=1i 2',
    "中文 城管",
    "tab\there",
    "",
]


def test_hostile_tags_and_strings_round_trip(influx: Influx, influx_db: str) -> None:
    lines = [
        encode("hostile", {"device": dev, "city": "321200"}, {"s": s, "n": i}, 1000 + i)
        for i, (dev, s) in enumerate(zip(HOSTILE, STRINGS, strict=True))
    ]
    assert write(influx, influx_db, lines) == (204, "")
    points = influx.points("hostile", influx_db)
    assert len(points) == len(HOSTILE)
    assert tag_keys(influx, influx_db, "hostile") == {"city", "device"}
    assert field_keys(influx, influx_db, "hostile") == {"s", "n"}
    by_n = {p["n"]: p for p in points}
    for i, (dev, s) in enumerate(zip(HOSTILE, STRINGS, strict=True)):
        assert by_n[i]["device"] == dev
        assert by_n[i]["city"] == "321200"
        assert by_n[i]["s"] == s
        assert by_n[i]["time"] == 1000 + i


def test_injection_attempts_store_exactly_one_point_each(influx: Influx, influx_db: str) -> None:
    lines = [
        encode("inj", {"device": "a,evil=1 x=1"}, {"f": 1}, 1),
        encode("inj", {"device": "b"}, {"s": 'x",evil="1'}, 2),
        encode("inj", {"device": "c"}, {"s": "first\ninj,evil=1 f=2i 3"}, 4),
    ]
    assert write(influx, influx_db, lines) == (204, "")
    assert [p["time"] for p in influx.points("inj", influx_db)] == [1, 2, 4]
    assert tag_keys(influx, influx_db, "inj") == {"device"}
    assert field_keys(influx, influx_db, "inj") == {"f", "s"}


def test_newline_in_a_string_field_is_stored_as_backslash_n(influx: Influx, influx_db: str) -> None:
    # Documented lossy mapping: line breaks in strings become the two characters \n (and \r).
    # InfluxDB 1.x unescapes only \" and \\ in strings, so what is stored is backslash + n,
    # the same as for a string that held backslash + n to begin with.
    lines = [
        encode("nl", {}, {"s": "two\nlines"}, 1),
        encode("nl", {}, {"s": "two\\nlines"}, 2),
        encode("nl", {}, {"s": "cr\r\nlf"}, 3),
    ]
    assert write(influx, influx_db, lines) == (204, "")
    stored = [p["s"] for p in influx.points("nl", influx_db)]
    assert stored == ["two\\nlines", "two\\nlines", "cr\\r\\nlf"]


def test_backslashes_in_names_are_stored_doubled_by_influxdb_1(
    influx: Influx, influx_db: str
) -> None:
    # encode() doubles backslashes in names (the InfluxDB 2.x rule). InfluxDB 1.x does not
    # unescape a doubled backslash in a tag value, tag key or field key: it stores both
    # characters. Distinct values stay distinct, they just read back doubled.
    lines = [
        encode("bs", {"t": "a\\b"}, {"f": 1}, 1),
        encode("bs", {"t": "a\\\\b"}, {"f": 2}, 2),
        encode("bs", {"k\\x": "v"}, {"f\\y": 3}, 3),
    ]
    assert write(influx, influx_db, lines) == (204, "")
    points = influx.points("bs", influx_db)
    assert [p["t"] for p in points[:2]] == ["a\\\\b", "a\\\\\\\\b"]
    assert points[2]["k\\\\x"] == "v"
    assert points[2]["f\\\\y"] == 3


def test_trailing_backslash_in_a_tag_value_is_refused_by_influxdb_1(
    influx: Influx, influx_db: str
) -> None:
    # InfluxDB 1.x treats any character after a backslash as escaped, so a tag value ending
    # in a backslash (escaped or not) swallows the separator: 'invalid tag format'. The
    # other points of the same write are still stored. Ids are validated before they
    # become tags, so this only matters for values that bypass validation.
    lines = [
        encode("tb", {"t": "end\\"}, {"f": 1}, 1),
        encode("tb", {"t": "fine"}, {"f": 2}, 2),
    ]
    status, body = write(influx, influx_db, lines)
    assert status == 400
    assert "invalid tag format" in body
    assert [p["f"] for p in influx.points("tb", influx_db)] == [2]


def test_newline_in_a_tag_value_is_stored(influx: Influx, influx_db: str) -> None:
    line = encode("nt", {"t": "a\nb"}, {"f": 1}, 1)
    assert write(influx, influx_db, [line]) == (204, "")
    assert [p["t"] for p in influx.points("nt", influx_db)] == ["a b"]


def test_value_types_round_trip(influx: Influx, influx_db: str) -> None:
    fields = {"f": 32.455512, "i": -7, "big": 2**63 - 1, "t": True, "b": False, "s": "x"}
    assert write(influx, influx_db, [encode("types", {}, fields, 5)]) == (204, "")
    (point,) = influx.points("types", influx_db)
    assert point == {"time": 5, **fields}
