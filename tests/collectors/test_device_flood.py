"""A flood of made-up device ids through the real broker: bounded, and known handhelds unharmed.

Anyone who can choose a device id can publish fixes for any number of them. The service
takes a bounded number of unknown handhelds (``devices.max_unknown``), refuses the rest as
``unknown_device`` with a limited number of dead letters (``devices.unknown_deadletters``,
the rest counted), and goes on taking the handhelds it knows: the roster's, and those
named by a current shift.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from citywatch.app.service import Service
from tests.helpers import Listener, Publisher, await_until, settings_for
from tests.services import Mosquitto

CITY = "321200"
FLOOD = 60
BOUND = 20
LETTERS = 5
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "deadletter.json"


def fix(device: str) -> tuple[str, dict[str, Any]]:
    body = {"ts": time.time(), "lat": 32.45, "lon": 119.92, "acc": 5}
    return f"citywatch/{CITY}/devices/{device}/gps", body


def shift_start(officer: str, device: str) -> tuple[str, dict[str, Any]]:
    body = {"ts": time.time(), "action": "start", "device": device, "lead": "lead-1"}
    body |= {"grids": ["321202001001001"], "role": "inspector"}
    return f"citywatch/{CITY}/officers/{officer}/shift", body


@pytest.mark.parametrize("with_roster", [False, True], ids=["shift-named", "roster"])
async def test_a_device_id_flood_is_bounded_and_known_handhelds_are_unaffected(
    mosquitto: Mosquitto, tmp_path: Path, with_roster: bool
) -> None:
    devices: dict[str, Any] = {"max_unknown": BOUND, "unknown_deadletters": LETTERS}
    if with_roster:
        roster = tmp_path / "roster.yaml"
        officers = {"off-1": {"lead": "lead-1", "devices": ["cgt-1"]}}
        doc = {"cities": {CITY: {"officers": officers, "devices": ["cgt-spare"]}}}
        roster.write_text(yaml.safe_dump(doc))
        devices["roster_file"] = str(roster)
        known = ["cgt-1", "cgt-spare"]
    else:
        known = ["cgt-1"]
    settings = settings_for(mosquitto.url, "", "citywatch", tmp_path / "var", devices=devices)
    with Listener(mosquitto.port, f"citywatch/{CITY}/deadletter") as letters:
        async with Service(settings, ["collector", "rules"]) as svc:
            assert svc.source is not None and svc.board is not None
            await svc.source.wait_connected(10)
            board = svc.board
            with Publisher(mosquitto.port) as pub:
                # Without a roster the shift start is what makes cgt-1 known.
                pub.send_all([shift_start("off-1", "cgt-1")])
                pub.send_all([fix(f"flood-{i:03d}") for i in range(FLOOD)])
                pub.send_all([fix(d) for d in known] + [fix("late-unknown")])
                await await_until(
                    lambda: all(getattr(board.devices.get((CITY, d)), "fix", None) for d in known),
                    what="the known handhelds' fixes on the board",
                )
            on_board = {dev for city, dev in board.devices}
            assert on_board == {f"flood-{i:03d}" for i in range(BOUND)} | set(known)
            assert board.devices[(CITY, "cgt-1")].officer == "off-1"
            rule = svc.rules["patrols"]
            await await_until(lambda: rule.state_of(CITY, "off-1") is not None, what="shift")

            # 41 refused: the first five as dead letters, the rest counted only.
            await await_until(lambda: len(letters.messages) >= LETTERS, what="dead letters")
            await asyncio.sleep(0.5)  # none beyond the budget
            got = [orjson.loads(raw) for _, raw in letters.messages]
            schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
            validator = Draft202012Validator(schema)
            assert len(got) == LETTERS
            for i, letter in enumerate(got):
                assert not list(validator.iter_errors(letter))
                assert letter["reason"] == "unknown_device"
                assert letter["topic"] == f"citywatch/{CITY}/devices/flood-{BOUND + i:03d}/gps"
                assert f"devices.max_unknown ({BOUND}) reached" in letter["detail"]

            def sample(name: str, **labels: str) -> float | None:
                return svc.registry.get_sample_value(name, labels)

            refused = FLOOD - BOUND + 1
            rejected = sample(
                "citywatch_ingest_rejected_total", kind="gps", reason="unknown_device"
            )
            assert rejected == refused
            suppressed = "citywatch_ingest_deadletters_suppressed_total"
            assert sample(suppressed, reason="unknown_device") == refused - LETTERS
            assert sample("citywatch_ingest_unknown_devices") == BOUND
            assert sample("citywatch_ingest_accepted_total", kind="gps") == BOUND + len(known)
