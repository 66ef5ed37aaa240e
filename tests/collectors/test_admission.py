"""The collector's register of handhelds: which devices are taken, which shift claims believed.

Device ids are chosen by the publisher, so data from handhelds that are neither in the
roster nor named by a current shift is taken only within bounds, refusals beyond them are
dead-lettered at a limited rate, and what is remembered is forgotten after
``devices.evict_after`` (on the injected clock). With a roster, a shift start must name
the roster's lead and one of the officer's handhelds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from citywatch.clock import ManualClock
from citywatch.collectors.admission import Admission
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.topics import Router
from citywatch.config import ConfigError, load_section
from citywatch.models import Fix, Rejected, ShiftEvent
from citywatch.roster import DevicesConfig, Roster, load_roster

CITY = "321200"
OTHER = "320100"
T0 = 1_795_313_730.0
GRID = "321202001002005"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "deadletter.json"
ROSTER = {
    "cities": {
        CITY: {
            "officers": {
                "off-0007": {"lead": "lead-01", "unit": "team-3", "devices": ["cgt-0007"]},
                "off-0008": {"lead": "lead-01", "devices": ["cgt-0008", "cgt-0108"]},
            },
            "devices": ["cgt-spare"],
        }
    }
}


def roster_file(tmp_path: Path, doc: Any = ROSTER, name: str = "roster.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(doc))
    return path


class Ingest:
    """A batch decoder with a register of handhelds on a manual clock."""

    def __init__(self, roster: Roster | None = None, **devices: Any) -> None:
        self.clock = ManualClock(T0)
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics(self.registry)
        cfg = load_section(DevicesConfig, devices, "devices")
        self.admission = Admission(cfg, roster, self.clock, metrics)
        self.decoder = BatchDecoder(IngestConfig(), Router(), metrics, admission=self.admission)
        self.mid = 0

    def send(self, *items: tuple[str, dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        msgs = []
        for topic, body in items:
            self.mid += 1
            msgs.append(Incoming(topic, orjson.dumps(body), self.clock.now(), mid=self.mid))
        out = self.decoder.decode(msgs)
        return out.records, [orjson.loads(p) for _, p in out.deadletters]

    def fix(self, device: str, city: str = CITY) -> tuple[str, dict[str, Any]]:
        now = self.clock.now()
        return f"citywatch/{city}/devices/{device}/gps", {"ts": now, "lat": 32.45, "lon": 119.92}

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def start(officer: str, device: str, lead: str, ts: float = T0) -> tuple[str, dict[str, Any]]:
    body = {"ts": ts, "action": "start", "device": device, "grids": [GRID], "lead": lead}
    return f"citywatch/{CITY}/officers/{officer}/shift", body | {"role": "inspector"}


def end(officer: str, ts: float = T0) -> tuple[str, dict[str, Any]]:
    return f"citywatch/{CITY}/officers/{officer}/shift", {"ts": ts, "action": "end"}


def fixes_of(records: list[Any]) -> list[str]:
    return [r.device for r in records if isinstance(r, Fix)]


def validate(letter: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not list(validator.iter_errors(letter))


def test_a_flood_of_made_up_ids_is_taken_up_to_the_bound_then_refused_at_a_limited_rate() -> None:
    ing = Ingest(max_unknown=5, unknown_deadletters=3)
    records, letters = ing.send(*(ing.fix(f"flood-{i}") for i in range(50)))
    assert fixes_of(records) == [f"flood-{i}" for i in range(5)]
    # 45 refused: three dead letters (and records), the rest counted only.
    assert [r.reason for r in records if isinstance(r, Rejected)] == ["unknown_device"] * 3
    assert len(letters) == 3
    for letter in letters:
        validate(letter)
        assert letter["reason"] == "unknown_device"
        assert "devices.max_unknown (5) reached" in letter["detail"]
    assert letters[0]["topic"] == f"citywatch/{CITY}/devices/flood-5/gps"
    rejected = ing.sample("citywatch_ingest_rejected_total", kind="gps", reason="unknown_device")
    assert rejected == 45
    suppressed = "citywatch_ingest_deadletters_suppressed_total"
    assert ing.sample(suppressed, reason="unknown_device") == 42
    assert ing.sample("citywatch_ingest_unknown_devices") == 5
    # Those taken stay taken; a minute later the dead-letter budget is back.
    ing.clock.advance(61)
    records, letters = ing.send(ing.fix("flood-0"), ing.fix("flood-99"))
    assert fixes_of(records) == ["flood-0"] and len(letters) == 1


def test_known_handhelds_are_taken_whatever_the_flood(tmp_path: Path) -> None:
    ing = Ingest(load_roster(str(roster_file(tmp_path))), max_unknown=2, unknown_deadletters=0)
    ing.send(*(ing.fix(f"flood-{i}") for i in range(10)))
    # The roster's handhelds (an officer's, and the city's spare), and one a shift names.
    records, letters = ing.send(
        ing.fix("cgt-0007"),
        ing.fix("cgt-spare"),
        start("off-0008", "cgt-0108", "lead-01"),
        ing.fix("cgt-0108"),
        ing.fix("flood-99"),
    )
    assert fixes_of(records) == ["cgt-0007", "cgt-spare", "cgt-0108"]
    assert letters == []  # unknown_deadletters: 0
    assert ing.sample("citywatch_ingest_unknown_devices") == 2
    # A roster's handheld is known in its own city only: elsewhere it counts as unknown.
    ing.send(ing.fix("cgt-0007", city=OTHER))
    assert ing.sample("citywatch_ingest_unknown_devices") == 3


def test_a_shift_makes_its_handheld_known_until_it_ends() -> None:
    ing = Ingest(unknown="deadletter")
    records, letters = ing.send(ing.fix("cgt-1"))
    assert fixes_of(records) == [] and letters[0]["reason"] == "unknown_device"
    assert "devices.unknown is deadletter" in letters[0]["detail"]
    records, _ = ing.send(start("off-1", "cgt-1", "lead-1"), ing.fix("cgt-1"))
    assert fixes_of(records) == ["cgt-1"]
    # A new shift with another handheld: the old one is no longer known through it.
    records, _ = ing.send(start("off-1", "cgt-2", "lead-1"), ing.fix("cgt-1"), ing.fix("cgt-2"))
    assert fixes_of(records) == ["cgt-2"]
    records, _ = ing.send(end("off-1"), ing.fix("cgt-2"))
    assert fixes_of(records) == []


def test_what_is_remembered_is_forgotten_after_evict_after() -> None:
    ing = Ingest(max_unknown=3, evict_after="1h")
    ing.send(*(ing.fix(f"dev-{i}") for i in range(3)))
    ing.send(start("off-1", "cgt-1", "lead-1"))
    records, _ = ing.send(ing.fix("dev-new"))
    assert fixes_of(records) == []  # the bound is full
    ing.clock.advance(1800)
    ing.send(ing.fix("dev-0"))  # heard of again: kept
    ing.clock.advance(1801)
    records, _ = ing.send(ing.fix("dev-new"), ing.fix("dev-new2"))
    # dev-1 and dev-2 forgotten, so two new ones fit beside dev-0.
    assert fixes_of(records) == ["dev-new", "dev-new2"]
    assert ing.sample("citywatch_ingest_unknown_devices") == 3
    # The shift's handheld, silent for longer than evict_after, is no longer known through it.
    records, _ = ing.send(ing.fix("cgt-1"))
    assert fixes_of(records) == []
    adm = ing.admission
    assert len(adm._seen) == 3 and not adm._named and not adm._shifts


def test_no_bound_only_when_configured() -> None:
    ing = Ingest(max_unknown=None, max_unknown_total=None)
    records, _ = ing.send(*(ing.fix(f"dev-{i}") for i in range(200)))
    assert len(fixes_of(records)) == 200
    assert not ing.admission._seen  # nothing to count, nothing remembered


def test_the_total_bound_holds_over_cities() -> None:
    ing = Ingest(max_unknown=10, max_unknown_total=4)
    cities = ["321200", "320100", "310100", "110100", "440300"]
    records, letters = ing.send(*(ing.fix("dev-1", city=c) for c in cities))
    assert len(fixes_of(records)) == 4
    assert "devices.max_unknown_total (4) reached" in letters[0]["detail"]
    assert letters[0]["topic"] == "citywatch/440300/devices/dev-1/gps"


def test_limiting_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ing = Ingest(max_unknown=1, unknown_deadletters=1)
    with caplog.at_level(logging.WARNING, logger="citywatch.collectors.admission"):
        for _ in range(3):
            ing.send(*(ing.fix(f"flood-{i}") for i in range(20)))
        ing.clock.advance(61)
        ing.send(*(ing.fix(f"flood-{i}") for i in range(20)))
        ing.clock.advance(61)
        ing.send(ing.fix("flood-0"))  # a quiet minute passed: limiting ended
        ing.clock.advance(61)
        ing.send(ing.fix("flood-0"))
    lines = [r.getMessage() for r in caplog.records]
    assert sum("reached devices.max_unknown" in m for m in lines) == 1
    assert sum("the rest are counted only" in m for m in lines) == 1
    ended = [m for m in lines if "back under 1 a minute" in m]
    assert ended == ["unknown_device dead letters back under 1 a minute; 74 were counted only"]


# -- the roster and shift claims ----------------------------------------------------------


def test_a_forged_shift_start_is_refused_with_the_rosters_values(tmp_path: Path) -> None:
    roster = load_roster(str(roster_file(tmp_path)))
    ing = Ingest(roster)
    forged = [
        # off-0007 names itself as its lead, and claims off-0008's handheld.
        (start("off-0007", "cgt-0008", "off-0007"), "lead off-0007 is not off-0007's lead"),
        (start("off-0007", "cgt-0008", "lead-01"), "device cgt-0008 is not one of off-0007's"),
        (start("off-0009", "cgt-0009", "lead-01"), "officer off-0009 is not in the roster"),
    ]
    records, letters = ing.send(*(msg for msg, _ in forged))
    assert not [r for r in records if isinstance(r, ShiftEvent)]
    assert [r.reason for r in records] == ["roster_mismatch"] * 3
    for letter, (_, detail) in zip(letters, forged, strict=True):
        validate(letter)
        assert letter["reason"] == "roster_mismatch"
        assert letter["detail"].startswith(detail), letter["detail"]
    assert letters[0]["detail"] == "lead off-0007 is not off-0007's lead in the roster (lead-01)"
    assert letters[1]["detail"] == (
        "device cgt-0008 is not one of off-0007's devices in the roster (cgt-0007)"
    )
    ok = ing.sample("citywatch_ingest_rejected_total", kind="shift", reason="roster_mismatch")
    assert ok == 3
    # What the roster says stands; the end and breaks are not checked.
    records, letters = ing.send(
        start("off-0008", "cgt-0108", "lead-01"), end("off-0009"), end("off-0008")
    )
    assert letters == [] and [r.action for r in records] == ["start", "end", "end"]


def test_without_a_roster_shift_claims_are_taken_as_sent() -> None:
    ing = Ingest()
    records, letters = ing.send(start("off-0007", "cgt-0008", "off-0007"))
    assert letters == [] and records[0].lead == "off-0007"


def test_a_new_roster_applies_to_the_next_shift_start(tmp_path: Path) -> None:
    ing = Ingest()
    ing.admission.reconfigure(ing.admission.cfg, load_roster(str(roster_file(tmp_path))))
    _, letters = ing.send(start("off-0007", "cgt-0007", "off-0007"))
    assert letters[0]["reason"] == "roster_mismatch"


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"cities": {"3212": {}}}, "cities.3212"),
        ({"cities": {CITY: {"officers": {"off 7": {"lead": "l"}}}}}, "officers.off 7"),
        ({"cities": {CITY: {"officers": {"off-7": {"devices": ["d"]}}}}}, "cities.321200"),
        ({"cities": {CITY: {"officers": {"off-7": {"lead": "a/b"}}}}}, "off-7.lead"),
        ({"cities": {CITY: {"officers": {"off-7": {"lead": "l", "devices": ["#"]}}}}}, "devices"),
        ({"cities": {CITY: {"devices": "cgt-1"}}}, "devices"),
        ({"officers": {}}, "officers"),
    ],
)
def test_a_bad_roster_names_the_file_and_the_entry(doc: Any, key: str, tmp_path: Path) -> None:
    path = roster_file(tmp_path, doc, "roster.yaml")
    with pytest.raises(ConfigError) as err:
        load_roster(str(path))
    assert err.value.key == "devices.roster_file"
    assert str(path) in err.value.problem and key in err.value.problem


def test_a_roster_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(
        'cities:\n  "321200":\n    officers:\n'
        "      off-0007: {lead: lead-01, unit: team-3, devices: [cgt-0007]}\n"
        "    devices: [cgt-spare]\n"
    )
    roster = load_roster(str(path))
    assert roster is not None and len(roster) == 1
    assert roster.devices == {(CITY, "cgt-0007"), (CITY, "cgt-spare")}
    assert load_roster("") is None
    with pytest.raises(ConfigError, match="cannot read"):
        load_roster(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"unknown": "drop"}, "devices.unknown"),
        ({"max_unknown": 0}, "devices.max_unknown"),
        ({"max_unknown_total": -1}, "devices.max_unknown_total"),
        ({"unknown_deadletters": -1}, "devices.unknown_deadletters"),
        ({"evict_after": "30s"}, "devices.evict_after"),
    ],
)
def test_bad_devices_settings_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_section(DevicesConfig, raw, "devices")
    assert err.value.key == key
