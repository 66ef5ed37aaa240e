"""Components run alone: ``--only collector`` and ``--only rules`` side by side (scale-out)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from citywatch.app.service import Service
from tests.helpers import Publisher, await_until, settings_for
from tests.services import Influx, Mosquitto

CASES = {"warn_at": 0.5, "calendar": "natural", "limits": {"filing": "2s"}}


async def test_collector_and_rules_in_separate_processes_each_get_every_message(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    base = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "a", cases=CASES)
    now = time.time()
    async with (
        Service(base, ["collector"]) as ingest,
        Service(dataclasses.replace(base, data_dir=str(tmp_path / "b")), ["rules"]) as rules,
    ):
        assert ingest.source is not None and rules.source is not None
        assert rules.source.cfg.client_id == base.mqtt.client_id + "-rules"
        assert "cases" not in ingest.rules and "cases" in rules.rules
        await ingest.source.wait_connected(10)
        await rules.source.wait_connected(10)
        with Publisher(mosquitto.port) as pub:
            pub.send_all(
                [
                    ("citywatch/321200/devices/d1/gps", {"ts": now, "lat": 32.45, "lon": 119.92}),
                    ("citywatch/321200/cases/S1/events", {"ts": now, "event": "reported"}),
                ]
            )

        def overdue() -> bool:
            labels = {"rule": "case_overdue", "status": "firing"}
            return rules.registry.get_sample_value("citywatch_rule_alert_events_total", labels) == 1

        await await_until(overdue, what="red light from the rules process")
        await await_until(lambda: influx.count("gps", influx_db) == 1, what="fix stored")
        await await_until(lambda: influx.count("case_event", influx_db) == 1, what="case stored")
        assert rules.writer is not None and rules.writer.stats["written"] >= 1
    # The rules process stored alert history only; the collector stored the observations once.
    assert influx.count("alert_event", influx_db) == 2
    assert influx.count("gps", influx_db) == 1
