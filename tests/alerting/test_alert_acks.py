"""Acknowledging an alert from a handheld, end to end through the broker.

A patrol lead's handheld gets the push on ``citywatch/{city}/alerts/{lead}`` and
answers on ``citywatch/{city}/acks/{lead}``: everyone told hears of the
acknowledgement, the escalation never comes. Acknowledgements that cannot apply
go to the dead-letter topic as ``ack_refused``; a repeat is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from citywatch.app.service import Service
from tests.helpers import (
    FAST_OFFLINE,
    Listener,
    Publisher,
    await_until,
    connected,
    settings_for,
    shift_start,
)
from tests.services import Influx, Mosquitto

CITY = "321200"
ESCALATE_AFTER = 2.0
SUPERVISOR = f"citywatch/{CITY}/alerts/supervisor"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ALERTING = {
    "routes": [
        {
            "match": {"subject": ["officer"]},
            "receivers": ["{lead}"],
            "escalate": [{"after": "2s", "receivers": ["supervisor"]}],
        }
    ]
}


@contextlib.asynccontextmanager
async def started(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, Listener, Listener]]:
    """The service with fast offline and a 2 s escalation, and listeners on pushes and letters."""
    settings = settings_for(
        mosquitto.url,
        influx.url,
        influx_db,
        tmp_path / "var",
        patrols=FAST_OFFLINE,
        alerting=ALERTING,
    )
    alerts = Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#")
    letters = Listener(mosquitto.port, f"citywatch/{CITY}/deadletter")
    try:
        async with connected(settings, ["collector", "rules"], push=True) as svc:
            yield svc, alerts, letters
    finally:
        alerts.close()
        letters.close()


def docs(listener: Listener, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for t, raw in list(listener.messages) if t == topic]


def on_shift(pub: Publisher, n: int) -> str:
    """Officer off-n starts a shift on dev-n under lead-n; returns the lead's alert topic."""
    start = shift_start(f"dev-{n}", f"lead-{n}")
    pub.send_all([(f"citywatch/{CITY}/officers/off-{n}/shift", start)])
    return f"citywatch/{CITY}/alerts/lead-{n}"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


async def test_ack_from_the_handheld_stops_the_escalation(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    async with started(mosquitto, influx, influx_db, tmp_path) as (svc, alerts, letters):
        with Publisher(mosquitto.port) as pub:
            lead = on_shift(pub, 1)
            # No heartbeat: offline after 1 s, pushed to the lead.
            await await_until(lambda: len(docs(alerts, lead)) >= 1, what="firing push")
            fired = time.monotonic()
            push = docs(alerts, lead)[0]
            assert push["rule"] == "device_offline" and push["status"] == "firing"
            assert push["escalation"] == 0
            alert_id = push["alert_id"]

            ack = {"alert_id": alert_id, "note": "已联系队员", "ts": time.time()}
            pub.send_all([(f"citywatch/{CITY}/acks/lead-1", ack)])
            await await_until(lambda: len(docs(alerts, lead)) >= 2, what="acknowledged push")
            told = docs(alerts, lead)[1]
            assert told["alert_id"] == alert_id and told["status"] == "acknowledged"
            assert told["details"]["kind"] == "ack"
            assert told["details"]["ack_by"] == "lead-1"
            assert told["details"]["ack_note"] == "已联系队员"
            assert svc.alerting is not None
            assert svc.alerting.by_id[alert_id].ack_by == "lead-1"

            # The repeat (a redelivery) goes first: had it been refused, its dead
            # letter would come before the refusals that follow it.
            pub.send_all(
                [
                    (f"citywatch/{CITY}/acks/lead-1", ack),
                    (f"citywatch/{CITY}/acks/stranger", {"alert_id": alert_id}),
                    (f"citywatch/{CITY}/acks/lead-1", {"alert_id": 9999, "note": "收到"}),
                ]
            )
            await await_until(lambda: len(letters.messages) >= 2, what="two dead letters")
            got = [orjson.loads(raw) for _, raw in letters.messages]
            for letter in got:
                assert not list(validator("deadletter").iter_errors(letter))
                assert letter["reason"] == "ack_refused"
            stranger, unknown = got[:2]
            assert stranger["topic"] == f"citywatch/{CITY}/acks/stranger"
            assert stranger["detail"] == (
                f"stranger was not told of alert {alert_id}, so cannot acknowledge it"
            )
            assert orjson.loads(stranger["payload"])["alert_id"] == alert_id
            assert unknown["topic"] == f"citywatch/{CITY}/acks/lead-1"
            assert unknown["detail"] == "alert 9999 is unknown"
            assert orjson.loads(unknown["payload"])["note"] == "收到"
            assert svc.alerting.by_id[alert_id].ack_by == "lead-1"

            # Past the escalation's time (measured, with a margin for its delivery),
            # the handheld comes back; the lead's pushes keep their order.
            await await_until(
                lambda: time.monotonic() - fired >= ESCALATE_AFTER + 0.5,
                what="the escalation's time",
            )
            pub.send_all([(f"citywatch/{CITY}/devices/dev-1/heartbeat", {"ts": time.time()})])
            await await_until(lambda: len(docs(alerts, lead)) >= 3, what="resolved push")
            assert time.monotonic() - fired >= ESCALATE_AFTER
            assert docs(alerts, lead)[2]["status"] == "resolved"
            assert docs(alerts, SUPERVISOR) == []
            statuses = [d["status"] for d in docs(alerts, lead)]
            assert statuses == ["firing", "acknowledged", "resolved"]
            assert len(letters.messages) == 2
        await await_until(
            lambda: influx.count("alert_ack", influx_db) >= 3, what="acks in InfluxDB"
        )


async def test_unacknowledged_alert_escalates_and_the_supervisor_acknowledges(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    """The control: without an ack the supervisor is told; late acks of others are refused."""
    async with started(mosquitto, influx, influx_db, tmp_path) as (_, alerts, letters):
        with Publisher(mosquitto.port) as pub:
            lead = on_shift(pub, 2)
            await await_until(lambda: len(docs(alerts, SUPERVISOR)) >= 1, what="escalation")
            escalated = docs(alerts, SUPERVISOR)[0]
            assert escalated["escalation"] == 1 and escalated["details"]["kind"] == "escalate"
            alert_id = escalated["alert_id"]

            pub.send_all([(f"citywatch/{CITY}/acks/supervisor", {"alert_id": alert_id})])
            await await_until(
                lambda: any(d["status"] == "acknowledged" for d in docs(alerts, lead)),
                what="the lead hears of the acknowledgement",
            )
            await await_until(lambda: len(docs(alerts, SUPERVISOR)) >= 2, what="ack push")
            assert docs(alerts, SUPERVISOR)[1]["details"]["ack_by"] == "supervisor"

            pub.send_all([(f"citywatch/{CITY}/acks/lead-2", {"alert_id": alert_id})])
            await await_until(lambda: len(letters.messages) >= 1, what="dead letter")
            letter = orjson.loads(letters.messages[0][1])
            assert letter["reason"] == "ack_refused"
            assert letter["detail"] == (f"alert {alert_id} was already acknowledged by supervisor")

            pub.send_all([(f"citywatch/{CITY}/devices/dev-2/heartbeat", {"ts": time.time()})])
            await await_until(
                lambda: any(d["status"] == "resolved" for d in docs(alerts, lead)),
                what="resolved push",
            )
            pub.send_all([(f"citywatch/{CITY}/acks/lead-2", {"alert_id": alert_id})])
            await await_until(lambda: len(letters.messages) >= 2, what="second dead letter")
            letter = orjson.loads(letters.messages[1][1])
            assert letter["detail"] == f"alert {alert_id} is already resolved"
