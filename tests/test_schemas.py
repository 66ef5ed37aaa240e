"""The MQTT contract: JSON Schemas in ``schemas/``, their examples and docs/protocol.md.

Every ``schemas/<name>.json`` must be a valid draft 2020-12 schema; every
``schemas/examples/<name>/valid-*.json`` must validate against it and every
``invalid-*.json`` must fail, at the place listed in ``EXPECTED_FAILURES`` (so
an invalid example cannot pass the test by failing for an unintended reason).
Self-contained: reads only files, imports nothing from citywatch.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
PROTOCOL = ROOT / "docs" / "protocol.md"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

SCHEMA_NAMES = sorted(p.stem for p in SCHEMAS.glob("*.json"))
EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.json"))
EXAMPLE_NAME = re.compile(r"^(valid|invalid)-[a-z0-9]+(-[a-z0-9]+)*\.json$")

# The fixed parts of the contract (docs/protocol.md); a schema must not drift from them.
CONTRACT_ENUMS: dict[tuple[str, str], set[Any]] = {
    ("gps.json", "/$defs/fix/properties/crs/enum"): {"wgs84", "gcj02", "bd09"},
    ("case-event.json", "/properties/crs/enum"): {"wgs84", "gcj02", "bd09"},
    ("status.json", "/properties/status/enum"): {"online", "offline"},
    ("shift.json", "/properties/action/enum"): {"start", "end", "break_start", "break_end"},
    ("shift.json", "/properties/role/enum"): {"inspector", "enforcer"},
    ("case-event.json", "/properties/event/enum"): {
        "reported", "filed", "dispatched", "accepted", "resolved", "verified", "closed",
        "evaluated", "returned", "suspended", "resumed", "extended", "cancelled",
    },
    ("deadletter.json", "/properties/reason/enum"): {
        "payload_too_large", "bad_utf8", "malformed_json", "wrong_type", "missing_field",
        "out_of_range", "bad_timestamp", "future_timestamp", "stale_timestamp",
        "unknown_topic", "bad_id", "unknown_value", "too_many_fixes", "unknown_device",
        "roster_mismatch", "unsupported_type", "internal_error", "impossible_transition",
        "ack_refused", "influx_refused",
    },
    ("deadletter.json", "/properties/payload_encoding/enum"): {"utf-8", "base64"},
    ("alert-push.json", "/properties/severity/enum"): {"yellow", "red", "critical"},
    ("alert-push.json", "/properties/status/enum"): {"firing", "acknowledged", "resolved"},
    ("alert-push.json", "/properties/details/properties/kind/enum"): {
        "fire", "escalate", "remind", "reopen", "ack", "resolve",
    },
}  # fmt: skip
MAX_BATCH = 1000
DEADLETTER_MAX = 4096

# Each invalid example -> (JSON path, keyword) of an error it must produce.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    "alert-ack/invalid-alert-id-string": ("$.alert_id", "type"),
    "alert-ack/invalid-alert-id-zero": ("$.alert_id", "minimum"),
    "alert-ack/invalid-missing-alert-id": ("$", "required"),
    "alert-ack/invalid-naive-timestamp": ("$.ts", "pattern"),
    "alert-ack/invalid-note-line-break": ("$.note", "pattern"),
    "alert-ack/invalid-note-too-long": ("$.note", "maxLength"),
    "alert-push/invalid-missing-id": ("$", "required"),
    "alert-push/invalid-negative-escalation": ("$.escalation", "minimum"),
    "alert-push/invalid-starts-at-text": ("$.starts_at", "type"),
    "alert-push/invalid-unknown-severity": ("$.severity", "enum"),
    "case-event/invalid-category-code": ("$.category", "pattern"),
    "case-event/invalid-extend-negative": ("$.extend", "exclusiveMinimum"),
    "case-event/invalid-extend-words": ("$.extend", "pattern"),
    "case-event/invalid-extend-zero": ("$.extend", "not"),
    "case-event/invalid-extended-without-extend": ("$", "required"),
    "case-event/invalid-lat-without-lon": ("$", "dependentRequired"),
    "case-event/invalid-missing-event": ("$", "required"),
    "case-event/invalid-unknown-event": ("$.event", "enum"),
    "case-event/invalid-urgent-string": ("$.urgent", "type"),
    "deadletter/invalid-base64-characters": ("$.payload", "pattern"),
    "deadletter/invalid-hex-encoding": ("$.payload_encoding", "enum"),
    "deadletter/invalid-missing-payload-encoding": ("$", "required"),
    "deadletter/invalid-negative-index": ("$.index", "minimum"),
    "deadletter/invalid-received-at-not-utc": ("$.received_at", "pattern"),
    "deadletter/invalid-rejected-without-reasons": ("$", "dependentRequired"),
    "deadletter/invalid-size-string": ("$.size", "type"),
    "deadletter/invalid-too-many-elements": ("$.elements", "maxItems"),
    "deadletter/invalid-unknown-reason": ("$.reason", "enum"),
    "gps/invalid-batch-bad-element": ("$[1]", "required"),
    "gps/invalid-heading-over-360": ("$.heading", "maximum"),
    "gps/invalid-lat-as-string": ("$.lat", "type"),
    "gps/invalid-lat-out-of-range": ("$.lat", "maximum"),
    "gps/invalid-missing-ts": ("$", "required"),
    "gps/invalid-naive-timestamp": ("$.ts", "pattern"),
    "gps/invalid-negative-speed": ("$.speed", "minimum"),
    "gps/invalid-null-island": ("$", "not"),
    "gps/invalid-seq-fraction": ("$.seq", "type"),
    "gps/invalid-string-payload": ("$", "type"),
    "gps/invalid-unknown-crs": ("$.crs", "enum"),
    "heartbeat/invalid-app-too-long": ("$.app", "maxLength"),
    "heartbeat/invalid-battery-over-100": ("$.battery", "maximum"),
    "heartbeat/invalid-charging-string": ("$.charging", "type"),
    "heartbeat/invalid-missing-ts": ("$", "required"),
    "heartbeat/invalid-positive-signal": ("$.signal", "maximum"),
    "heartbeat/invalid-timestamp-format": ("$.ts", "pattern"),
    "owntracks-location/invalid-battery-over-100": ("$.batt", "maximum"),
    "owntracks-location/invalid-missing-tst": ("$", "required"),
    "owntracks-location/invalid-negative-velocity": ("$.vel", "minimum"),
    "owntracks-location/invalid-null-island": ("$", "not"),
    "owntracks-location/invalid-transition-type": ("$['_type']", "const"),
    "owntracks-location/invalid-tst-string": ("$.tst", "type"),
    "shift/invalid-bad-lead-id": ("$.lead", "pattern"),
    "shift/invalid-missing-action": ("$", "required"),
    "shift/invalid-short-grid-code": ("$.grids[0]", "pattern"),
    "shift/invalid-start-empty-grids": ("$.grids", "minItems"),
    "shift/invalid-start-without-grids": ("$", "required"),
    "shift/invalid-unknown-action": ("$.action", "enum"),
    "shift/invalid-unknown-role": ("$.role", "enum"),
    "status/invalid-boolean-status": ("$.status", "enum"),
    "status/invalid-missing-status": ("$", "required"),
    "status/invalid-missing-ts": ("$", "required"),
    "status/invalid-unknown-status": ("$.status", "enum"),
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        load_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def load_example(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def key(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def leaves(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """The innermost errors, looking inside anyOf/oneOf alternatives."""
    for error in errors:
        if error.context:
            yield from leaves(error.context)
        else:
            yield error


def pointer(doc: Any, ptr: str) -> Any:
    for part in ptr.strip("/").split("/"):
        doc = doc[part.replace("~1", "/").replace("~0", "~")]
    return doc


def describe(errors: Iterable[ValidationError]) -> str:
    return "; ".join(f"{e.json_path} [{e.validator}] {e.message[:120]}" for e in errors)


def test_there_are_schemas_and_examples() -> None:
    assert SCHEMA_NAMES, f"no schemas in {SCHEMAS}"
    assert EXAMPLE_FILES, f"no examples in {EXAMPLES}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema.get("$schema") == DRAFT
    assert schema.get("$id") == f"{name}.json", "use the relative file name as $id"
    assert schema.get("title") and schema.get("description")
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_has_valid_and_invalid_examples(name: str) -> None:
    files = [p.name for p in (EXAMPLES / name).glob("*.json")]
    assert any(f.startswith("valid-") for f in files), f"no valid-*.json for {name}"
    assert any(f.startswith("invalid-") for f in files), f"no invalid-*.json for {name}"


def test_every_example_belongs_to_a_schema_and_is_named_valid_or_invalid() -> None:
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_dir():
            assert path.parent == EXAMPLES and path.name in SCHEMA_NAMES, f"stray {path}"
        else:
            assert EXAMPLE_NAME.match(path.name), f"name {path} valid-*.json or invalid-*.json"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=key)
def test_example(path: Path) -> None:
    instance = load_example(path)
    errors = list(validator(path.parent.name).iter_errors(instance))
    if path.name.startswith("valid-"):
        assert not errors, describe(errors)
        return
    assert errors, f"{key(path)} is named invalid but validates"
    expected = EXPECTED_FAILURES.get(key(path))
    assert expected, f"add {key(path)!r} to EXPECTED_FAILURES with the error it must raise"
    found = {(e.json_path, str(e.validator)) for e in leaves(errors)}
    assert expected in found, f"expected {expected}, got {describe(leaves(errors))}"


def test_expected_failures_name_existing_examples() -> None:
    invalid = {key(p) for p in EXAMPLE_FILES if p.name.startswith("invalid-")}
    assert set(EXPECTED_FAILURES) <= invalid, set(EXPECTED_FAILURES) - invalid


@pytest.mark.parametrize(("schema", "ptr"), sorted(CONTRACT_ENUMS))
def test_enums_match_the_contract(schema: str, ptr: str) -> None:
    values = pointer(load_schema(schema.removesuffix(".json")), ptr)
    assert len(values) == len(set(values))
    assert set(values) == CONTRACT_ENUMS[schema, ptr]


def test_shared_definitions_are_identical() -> None:
    """Each schema is self-contained, so shared parts are copied; the copies must agree."""
    stamps, ids = {}, {}
    for name in SCHEMA_NAMES:
        defs = load_schema(name).get("$defs", {})
        if "timestamp" in defs:
            stamps[name] = defs["timestamp"]["anyOf"]
        if "id" in defs:
            ids[name] = defs["id"]
    assert {"gps", "heartbeat", "status", "shift", "case-event", "alert-ack"} <= set(stamps)
    assert len({json.dumps(v, sort_keys=True) for v in stamps.values()}) == 1, stamps
    assert len({json.dumps(v, sort_keys=True) for v in ids.values()}) == 1, ids


def test_gps_batch_limit() -> None:
    fix = load_example(EXAMPLES / "gps" / "valid-single.json")
    assert validator("gps").is_valid([fix] * MAX_BATCH)
    assert not validator("gps").is_valid([fix] * (MAX_BATCH + 1))


@pytest.mark.parametrize(
    "ts",
    ["2026-11-22T10:15:30+08:00", "2026-11-22T02:15:30Z", "2026-11-22T10:15:30.250-05:30",
     1795313730, 1795313730.25],
)  # fmt: skip
def test_timestamp_forms_accepted(ts: object) -> None:
    assert validator("heartbeat").is_valid({"ts": ts})


@pytest.mark.parametrize(
    "ts",
    ["2026-11-22T10:15:30", "2026-11-22 10:15:30+08:00", "2026-11-22", "1795313730",
     "2026-11-22T10:15:30+0800", True, None],
)  # fmt: skip
def test_timestamp_forms_rejected(ts: object) -> None:
    assert not validator("heartbeat").is_valid({"ts": ts})


@pytest.mark.parametrize("path", sorted((EXAMPLES / "deadletter").glob("valid-*.json")), ids=key)
def test_deadletter_example_is_consistent(path: Path) -> None:
    letter = load_example(path)
    if letter["payload_encoding"] == "base64":
        raw = base64.b64decode(letter["payload"], validate=True)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    else:
        raw = letter["payload"].encode("utf-8")
    assert len(raw) <= DEADLETTER_MAX
    if letter["truncated"]:
        assert letter["size"] > len(raw)
    else:
        assert letter["size"] == len(raw)
    assert re.fullmatch(r"citywatch/([0-9]{6}|unknown)/.+", letter["topic"])


def doc_json_blocks() -> list[Any]:
    text = PROTOCOL.read_text(encoding="utf-8")
    return [json.loads(b) for b in re.findall(r"^```json\n(.*?)^```$", text, re.M | re.S)]


def test_protocol_examples_are_valid_example_files() -> None:
    valid: dict[str, list[Any]] = {name: [] for name in SCHEMA_NAMES}
    for path in EXAMPLE_FILES:
        if path.name.startswith("valid-"):
            valid[path.parent.name].append(load_example(path))
    shown: set[str] = set()
    for block in doc_json_blocks():
        owners = [name for name, examples in valid.items() if block in examples]
        assert owners, f"docs/protocol.md shows a payload that is no valid example: {block}"
        shown.update(owners)
    missing = set(SCHEMA_NAMES) - shown
    assert not missing, f"docs/protocol.md shows no example for {sorted(missing)}"


def test_protocol_lists_every_reason() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    for reason in CONTRACT_ENUMS["deadletter.json", "/properties/reason/enum"]:
        assert re.search(rf"^\| `{reason}` \|", text, re.M), f"{reason} missing from reasons table"
