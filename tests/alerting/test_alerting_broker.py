"""Alerting against a real broker: pushes reach the right topics, escalate on time, stop on ack.

Alerting runs on a manual clock (escalation after 10 minutes is one ``advance``
away); the broker, the MQTT push and the outbox are real.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.notifiers.mqtt import MqttPush
from citywatch.alerting.service import Alerting
from citywatch.clock import ManualClock
from citywatch.config import load_section, parse_mqtt_url
from citywatch.models import AlertEvent
from tests.alerting.standalone import standalone
from tests.helpers import Listener, await_until
from tests.services import Mosquitto

CITY = "321200"
ROUTES = {
    "routes": [
        {
            "name": "patrols",
            "match": {"subject": ["officer"]},
            "receivers": ["{lead}"],
            "escalate": [
                {"after": "10m", "receivers": ["district-supervisor"]},
                {"after": "30m", "receivers": ["duty"]},
            ],
        }
    ],
    "repeat_interval": "0s",
}


def idle(status: str, at: float, officer: str = "off-7") -> AlertEvent:
    return AlertEvent(
        rule="patrol_idle",
        status=status,
        severity="yellow",
        city=CITY,
        subject_kind="officer",
        subject=officer,
        at=at,
        labels={"officer": officer, "device": "dev-7", "lead": "lead-1", "grid": "321202001001001"},
        values={"since": at, "held": 600.0, "lon": 119.9, "lat": 32.45},
        summary=f"{officer} 原地停留 10 分钟",
    )


@contextlib.asynccontextmanager
async def running(
    broker: Mosquitto, data: Path, clock: ManualClock, raw: dict[str, Any] | None = None
) -> AsyncIterator[Alerting]:
    cfg = load_section(AlertingConfig, raw if raw is not None else ROUTES, "alerting")
    push = MqttPush(parse_mqtt_url(broker.url), f"push-{uuid.uuid4().hex[:6]}", "citywatch")
    async with push, aiohttp.ClientSession() as session:
        assert await push.wait_connected(10)
        alerting = standalone(cfg, data, push, session, clock)
        async with alerting:
            yield alerting


def received(listener: Listener) -> list[tuple[str, dict[str, Any]]]:
    return [(t, orjson.loads(p)) for t, p in list(listener.messages)]


async def until(listener: Listener, what: str, pred: Callable[[list[Any]], bool]) -> None:
    await await_until(lambda: pred(received(listener)), timeout=15, what=what)


async def test_push_escalation_and_acknowledgement(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = ManualClock()
    t0 = clock.now()
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#") as listener:
        async with running(mosquitto, tmp_path, clock) as alerting:
            await alerting.emit([idle("firing", t0 - 600)])
            await until(listener, "push to the lead", lambda m: len(m) == 1)
            topic, doc = received(listener)[0]
            assert topic == f"citywatch/{CITY}/alerts/lead-1"
            assert doc["rule"] == "patrol_idle" and doc["status"] == "firing"
            assert doc["severity"] == "yellow" and doc["receiver"] == "lead-1"
            assert doc["subject"] == {"kind": "officer", "id": "off-7"}
            assert doc["officer"] == "off-7" and doc["device"] == "dev-7"
            assert doc["grid"] == "321202001001001" and doc["escalation"] == 0
            assert doc["starts_at"] == t0 - 600 and doc["ends_at"] is None
            assert "原地停留" in doc["summary"] and "网格 321202001001001" in doc["summary"]
            assert doc["id"] == f"{alerting.store.epoch}-{doc['alert_id']}-1-fire0-lead-1"

            clock.advance(600)
            await until(listener, "escalation", lambda m: len(m) == 2)
            topic, doc = received(listener)[1]
            assert topic == f"citywatch/{CITY}/alerts/district-supervisor"
            assert doc["severity"] == "critical" and doc["escalation"] == 1

            acked = await alerting.acknowledge(doc["alert_id"], "lead-1", "已联系队员")
            assert acked.status == "acknowledged"
            await until(listener, "acknowledgements", lambda m: len(m) == 4)
            acks = {t.rsplit("/", 1)[1]: d for t, d in received(listener)[2:]}
            assert set(acks) == {"lead-1", "district-supervisor"}
            assert all(d["status"] == "acknowledged" for d in acks.values())
            assert acks["lead-1"]["details"]["ack_by"] == "lead-1"
            assert len(alerting.timers) == 0  # the chain stopped

            # Past the duty desk's step: nobody is told, and the resolution is.
            clock.advance(3600)
            await alerting.emit([idle("resolved", clock.now())])
            await until(listener, "resolutions", lambda m: len(m) == 6)
            tail = received(listener)[4:]
            assert {t.rsplit("/", 1)[1] for t, _ in tail} == {"lead-1", "district-supervisor"}
            assert all(d["status"] == "resolved" and d["ends_at"] for _, d in tail)


async def test_state_and_outbox_survive_a_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = ManualClock()
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#") as listener:
        async with running(mosquitto, tmp_path, clock) as alerting:
            await alerting.emit([idle("firing", clock.now())])
            await until(listener, "first push", lambda m: len(m) == 1)
        # Down for 15 minutes: the escalation due meanwhile goes out at start-up, once.
        clock.advance(900)
        async with running(mosquitto, tmp_path, clock) as alerting:
            await until(listener, "escalation after restart", lambda m: len(m) == 2)
            assert received(listener)[1][0].endswith("/district-supervisor")
            # The rule raising the same condition again after its own restart changes nothing.
            await alerting.emit([idle("firing", clock.now() - 900)])
            assert len(alerting.by_id) == 1
            alert_id = received(listener)[0][1]["alert_id"]
            await alerting.acknowledge(alert_id, "lead-1", None)
            await until(listener, "acks", lambda m: len(m) == 4)
            first = f"{alerting.store.epoch}-{alert_id}-1-fire0-lead-1"
        assert [d["id"] for _, d in received(listener)].count(first) == 1


async def test_silence_mutes_then_releases(mosquitto: Mosquitto, tmp_path: Path) -> None:
    from citywatch.alerting.silences import Matcher

    clock = ManualClock()
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#") as listener:
        async with running(mosquitto, tmp_path, clock) as alerting:
            s = await alerting.add_silence(
                [Matcher("grid", "321202.*", "=~")],
                None,
                clock.now() + 300,
                "duty-desk",
                "庙会 temple fair",
            )
            await alerting.emit([idle("firing", clock.now())])
            a = next(iter(alerting.by_id.values()))
            assert alerting.silenced_by(a) == s.id
            # Another officer outside the silenced grid is told at once; the first is not.
            other = idle("firing", clock.now(), officer="off-8")
            other = other._replace(labels={**other.labels, "grid": "321203001001001"})
            await alerting.emit([other])
            await until(listener, "unsilenced push", lambda m: len(m) == 1)
            assert received(listener)[0][1]["officer"] == "off-8"
            clock.advance(301)
            await until(listener, "released push", lambda m: len(m) == 2)
            assert received(listener)[1][1]["officer"] == "off-7"


@pytest.mark.parametrize("n", [300])
async def test_many_alerts_are_each_pushed_once(
    mosquitto: Mosquitto, tmp_path: Path, n: int
) -> None:
    clock = ManualClock()
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#") as listener:
        async with running(mosquitto, tmp_path, clock) as alerting:
            events = [idle("firing", clock.now(), officer=f"off-{i}") for i in range(n)]
            for i in range(0, n, 50):
                await alerting.emit(events[i : i + 50])
            await until(listener, "all pushes", lambda m: len(m) >= n)
            ids = [d["id"] for _, d in received(listener)]
            assert len(set(ids)) == n
            reg = alerting.metrics.registry
            # Counted once the broker's PUBACKs are in, which may be after the listener has all.
            await await_until(
                lambda: (
                    reg.get_sample_value("citywatch_notifications_sent_total", {"channel": "mqtt"})
                    == n
                ),
                timeout=15,
                what="all counted as sent",
            )
            assert reg.get_sample_value("citywatch_alert_delivery_delay_seconds_count") == n
