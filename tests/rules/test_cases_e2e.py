"""Cases over a real broker and InfluxDB: lights at the right instants, across a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from citywatch.app.service import Service
from tests.helpers import Listener, Publisher, await_until, connected, settings_for
from tests.services import Influx, Mosquitto

CITY = "321200"
CASES = {
    "warn_at": 0.5,
    "calendar": "natural",
    "limits": {"filing": "3s", "dispatch": "4s", "disposal": "20s"},
}


def lights(influx: Influx, db: str) -> list[dict[str, object]]:
    return influx.points("alert_event", db) if influx.count("alert_event", db) else []


def fired(svc: Service, rule: str, status: str = "firing") -> float:
    labels = {"rule": rule, "status": status}
    return svc.registry.get_sample_value("citywatch_rule_alert_events_total", labels) or 0.0


async def test_yellow_and_red_on_time_then_resolved_across_a_restart(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path, cases=CASES)
    topic = f"citywatch/{CITY}/cases/E1/events"
    t0 = time.time()
    report = {
        "ts": t0,
        "event": "reported",
        "category": "0101",
        "grid": "321202001001001",
        "unit": "unit-sanitation",
    }
    async with connected(settings, ["collector", "rules"]) as svc:
        with Publisher(mosquitto.port) as pub:
            pub.send_all([(topic, report)])
        await await_until(lambda: fired(svc, "case_warning") == 1, timeout=5, what="yellow")
        seen_yellow = time.time()
    # Yellow at 1.5 s after reporting, within a second.
    assert 1.5 <= seen_yellow - t0 < 2.5
    # Restart before the red instant (3 s): nothing is lost, nothing flagged twice.
    async with Service(settings, ["collector", "rules"]) as svc:
        assert svc.registry.get_sample_value("citywatch_cases_restored") == 1
        await await_until(lambda: fired(svc, "case_overdue") == 1, timeout=6, what="red")
        seen_red = time.time()
        assert fired(svc, "case_warning") == 0, "yellow was not raised again"
        assert 3.0 <= seen_red - t0 < 4.0
        with Publisher(mosquitto.port) as pub:
            pub.send_all([(topic, {"ts": time.time(), "event": "filed"})])
        await await_until(
            lambda: (
                fired(svc, "case_overdue", "resolved") == 1
                and fired(svc, "case_warning", "resolved") == 1
            ),
            what="resolution",
        )
    await await_until(lambda: len(lights(influx, influx_db)) == 4, what="alert history stored")
    points = sorted(lights(influx, influx_db), key=lambda p: (p["time"], p["rule"]))  # type: ignore[arg-type, return-value]
    firing = {p["rule"]: p for p in points if p["status"] == "firing"}
    assert abs(firing["case_warning"]["time"] / 1e9 - (t0 + 1.5)) < 0.01  # type: ignore[operator]
    assert abs(firing["case_overdue"]["deadline"] - (t0 + 3)) < 0.01  # type: ignore[operator]
    assert firing["case_overdue"]["step"] == "filing"
    assert firing["case_overdue"]["unit"] == "unit-sanitation"


async def test_impossible_transition_goes_to_the_dead_letter_topic(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path, cases=CASES)
    topic = f"citywatch/{CITY}/cases/E2/events"
    now = time.time()
    with Listener(mosquitto.port, f"citywatch/{CITY}/deadletter") as dl:
        async with connected(settings, ["collector", "rules"]) as svc:
            with Publisher(mosquitto.port) as pub:
                pub.send_all(
                    [
                        (topic, {"ts": now - 30, "event": "reported"}),
                        (topic, {"ts": now - 20, "event": "cancelled"}),
                        (topic, {"ts": now - 10, "event": "filed"}),
                        (topic, {"ts": now - 20, "event": "cancelled"}),
                    ]
                )
            received = await asyncio.to_thread(dl.wait_for, 1)
            (letter,) = [orjson.loads(p) for _, p in received]
            await await_until(
                lambda: (
                    svc.registry.get_sample_value(
                        "citywatch_case_events_total", {"outcome": "duplicate"}
                    )
                    == 1
                ),
                what="duplicate counted",
            )
    assert letter["reason"] == "impossible_transition"
    assert "filed" in letter["detail"] and "cancelled" in letter["detail"]
    assert letter["topic"] == topic


async def test_refused_case_event_names_its_topic_under_the_configured_root(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    """The dead letter of a refused case event names the topic it came on, root and all."""
    settings = settings_for(
        mosquitto.url, influx.url, influx_db, tmp_path, cases=CASES, mqtt={"topic_root": "cw"}
    )
    topic = f"cw/{CITY}/cases/E3/events"
    now = time.time()
    with Listener(mosquitto.port, f"cw/{CITY}/deadletter") as dl:
        async with connected(settings, ["collector", "rules"]):
            with Publisher(mosquitto.port) as pub:
                pub.send_all(
                    [
                        (topic, {"ts": now - 30, "event": "reported"}),
                        (topic, {"ts": now - 20, "event": "cancelled"}),
                        (topic, {"ts": now - 10, "event": "filed"}),
                    ]
                )
            received = await asyncio.to_thread(dl.wait_for, 1)
    ((dl_topic, payload),) = received
    letter = orjson.loads(payload)
    assert dl_topic == f"cw/{CITY}/deadletter"
    assert letter["reason"] == "impossible_transition"
    assert letter["topic"] == topic
