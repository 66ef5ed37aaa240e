"""deploy/mosquitto.acl against a real Mosquitto with passwords, as docker compose runs it.

Handhelds log in with the officer id as username and the device id as client id: a
handheld may publish only under its own device topic (and its officer's shift and
acknowledgements), and reads only its officer's alert pushes. What its shift start claims
(its lead, its handheld) the broker cannot check: with a roster the service refuses a
start that contradicts it, so the officer's alerts go to the roster's lead, and the officer,
not told of them, cannot acknowledge them.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from citywatch.app.service import Service
from tests.helpers import await_until, settings_for, shift_start
from tests.services import Mosquitto, find_binary

ROOT = Path(__file__).resolve().parents[2]
CITY = "321200"
ACCOUNTS = {
    "citywatch": "svc-pass-1",
    "off-7": "off7-pass",
    "off-8": "off8-pass",
    "casesys": "case-pass",
    "dispatch": "dispatch-pass",
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    tool = find_binary("mosquitto_passwd")
    for i, (user, password) in enumerate(ACCOUNTS.items()):
        args = [tool, "-b", *(["-c"] if i == 0 else []), str(passwd), user, password]
        subprocess.run(args, check=True, capture_output=True)
    passwd.chmod(0o600)
    # The same order as deploy/docker/mosquitto.conf: authentication after the lab defaults.
    extra = [
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {ROOT / 'deploy/mosquitto.acl'}",
    ]
    with Mosquitto(tmp_path / "broker", extra) as b:
        yield b


class Client:
    def __init__(self, port: int, user: str | None, password: str | None, client_id: str) -> None:
        self.got: list[str] = []
        self.payloads: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.rc: object = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(10)

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, rc: object, p: object) -> None:
        self.rc = rc
        self.connected.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.got.append(msg.topic)
            self.payloads.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def ok(self) -> bool:
        return not getattr(self.rc, "is_failure", True)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, 1)
        assert done.wait(10)

    def publish(self, topic: str, payload: Any = None) -> None:
        body = b"{}" if payload is None else orjson.dumps(payload)
        self.c.publish(topic, body, qos=1).wait_for_publish(10)

    def docs(self, topic: str) -> list[dict[str, Any]]:
        with self.cond:
            return [orjson.loads(p) for t, p in self.payloads if t == topic]

    def wait_for(self, topic: str) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: topic in self.got, 10), self.got
            return list(self.got)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_a_handheld_publishes_only_as_itself_and_reads_only_its_pushes(broker: Mosquitto) -> None:
    service = Client(broker.port, "citywatch", ACCOUNTS["citywatch"], "cw-" + uuid.uuid4().hex[:6])
    hh = Client(broker.port, "off-7", ACCOUNTS["off-7"], "dev-7")
    try:
        assert service.ok() and hh.ok()
        service.subscribe("citywatch/#")
        hh.subscribe(f"citywatch/{CITY}/alerts/#")  # granted, but only its own arrive
        allowed = [
            f"citywatch/{CITY}/devices/dev-7/gps",
            f"citywatch/{CITY}/devices/dev-7/heartbeat",
            f"citywatch/{CITY}/officers/off-7/shift",
            f"citywatch/{CITY}/acks/off-7",
        ]
        denied = [
            f"citywatch/{CITY}/devices/dev-8/gps",
            f"citywatch/{CITY}/officers/off-8/shift",
            f"citywatch/{CITY}/cases/C1/events",
            f"citywatch/{CITY}/alerts/off-7",
            f"citywatch/{CITY}/deadletter",
        ]
        for topic in denied[:2] + allowed[:2] + denied[2:] + allowed[2:]:
            hh.publish(topic)
        marker = f"citywatch/{CITY}/devices/dev-7/status"
        hh.publish(marker)
        got = service.wait_for(marker)  # in order: everything before it has been decided
        assert [t for t in got if t != marker] == allowed
        service.publish(f"citywatch/{CITY}/alerts/off-8")
        service.publish(f"citywatch/{CITY}/alerts/off-7")
        assert hh.wait_for(f"citywatch/{CITY}/alerts/off-7") == [f"citywatch/{CITY}/alerts/off-7"]
    finally:
        service.close()
        hh.close()


def passed_on(broker: Mosquitto, user: str, client_id: str, topics: list[str]) -> list[str]:
    """What the service, subscribed to everything, gets of ``topics`` published in turn by
    ``user``: the last must pass (it marks that everything before it has been decided)."""
    service = Client(broker.port, "citywatch", ACCOUNTS["citywatch"], "cw-" + uuid.uuid4().hex[:6])
    system = Client(broker.port, user, ACCOUNTS[user], client_id)
    try:
        service.subscribe("citywatch/#")
        for topic in topics:
            system.publish(topic)
        return service.wait_for(topics[-1])
    finally:
        service.close()
        system.close()


def test_the_case_system_publishes_case_events_only(broker: Mosquitto) -> None:
    sent = [f"citywatch/{CITY}/devices/dev-7/gps", f"citywatch/{CITY}/cases/C-1/events"]
    assert passed_on(broker, "casesys", "casesys-1", sent) == [f"citywatch/{CITY}/cases/C-1/events"]


@pytest.mark.parametrize(("user", "password"), [(None, None), ("off-7", "wrong"), ("nobody", "x")])
def test_no_login_no_connection(broker: Mosquitto, user: str | None, password: str | None) -> None:
    c = Client(broker.port, user, password, "dev-x")
    try:
        assert c.connected.is_set() and not c.ok()
    finally:
        c.close()


def test_the_dispatch_system_publishes_shifts_only(broker: Mosquitto) -> None:
    marker = f"citywatch/{CITY}/officers/off-8/shift"
    sent = [
        f"citywatch/{CITY}/devices/dev-7/gps",
        f"citywatch/{CITY}/acks/off-7",
        f"citywatch/{CITY}/cases/C-1/events",
        f"citywatch/{CITY}/officers/off-7/shift",
        f"citywatch/{CITY}/alerts/off-7",
        marker,
    ]
    assert passed_on(broker, "dispatch", "dispatch-1", sent) == [
        f"citywatch/{CITY}/officers/off-7/shift",
        marker,
    ]


async def test_a_handheld_cannot_name_its_own_lead_with_a_roster(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """off-7 starts a shift naming itself as lead and off-8's handheld: refused. Its alerts
    go to the roster's lead, and its acknowledgement of them is refused."""
    roster = tmp_path / "roster.yaml"
    officers = {
        "off-7": {"lead": "lead-1", "devices": ["dev-7"]},
        "off-8": {"lead": "lead-1", "devices": ["dev-8"]},
    }
    roster.write_text(yaml.safe_dump({"cities": {CITY: {"officers": officers}}}))
    settings = settings_for(
        f"mqtt://citywatch:{ACCOUNTS['citywatch']}@127.0.0.1:{broker.port}",
        "",
        "citywatch",
        tmp_path / "var",
        patrols={"offline": {"after": "1s"}, "gps_lost": {"after": "1h"}},
        devices={"roster_file": str(roster)},
    )
    # A watcher with the service's read rights; the handheld logs in as its officer.
    watch = Client(broker.port, "citywatch", ACCOUNTS["citywatch"], "cw-" + uuid.uuid4().hex[:6])
    hh = Client(broker.port, "off-7", ACCOUNTS["off-7"], "dev-7")
    shift = f"citywatch/{CITY}/officers/off-7/shift"
    letters = f"citywatch/{CITY}/deadletter"
    try:
        assert watch.ok() and hh.ok()
        watch.subscribe("citywatch/#")
        hh.subscribe(f"citywatch/{CITY}/alerts/off-7")
        async with Service(settings, ["collector", "rules"]) as svc:
            assert svc.source is not None and svc.push is not None and svc.alerting is not None
            await svc.source.wait_connected(10)
            await svc.push.wait_connected(10)
            rule = svc.rules["patrols"]

            def letter_reasons() -> list[str]:
                return [d["reason"] for d in watch.docs(letters)]

            hh.publish(shift, shift_start("dev-8", "off-7"))  # itself as lead, another's handheld
            hh.publish(shift, shift_start("dev-8", "lead-1"))  # the right lead, another's handheld
            await await_until(lambda: len(letter_reasons()) >= 2, what="two dead letters")
            assert letter_reasons() == ["roster_mismatch", "roster_mismatch"]
            first, second = watch.docs(letters)
            assert first["detail"] == "lead off-7 is not off-7's lead in the roster (lead-1)"
            assert second["topic"] == shift and "device dev-8" in second["detail"]
            assert rule.state_of(CITY, "off-7") is None  # no shift began

            # The shift as the roster has it: the offline alert goes to lead-1 alone.
            hh.publish(shift, shift_start("dev-7", "lead-1"))
            lead_alerts = f"citywatch/{CITY}/alerts/lead-1"
            await await_until(lambda: bool(watch.docs(lead_alerts)), what="the push to the lead")
            push = watch.docs(lead_alerts)[0]
            assert (
                push["rule"] == "device_offline" and push["details"]["labels"]["lead"] == "lead-1"
            )
            alert_id = push["alert_id"]
            assert svc.alerting.by_id[alert_id].told == ["lead-1"]

            # off-7 acknowledges it anyway: refused, it was not told.
            hh.publish(f"citywatch/{CITY}/acks/off-7", {"alert_id": alert_id})
            await await_until(lambda: len(letter_reasons()) >= 3, what="the refusal")
            refusal = watch.docs(letters)[2]
            assert refusal["reason"] == "ack_refused"
            assert refusal["detail"] == (
                f"off-7 was not told of alert {alert_id}, so cannot acknowledge it"
            )
            assert svc.alerting.by_id[alert_id].ack_by is None
            assert watch.docs(f"citywatch/{CITY}/alerts/off-7") == []
            assert hh.got == []
    finally:
        watch.close()
        hh.close()
