"""deploy/mosquitto.acl against a real Mosquitto with passwords, as docker compose runs it.

Handhelds log in with the officer id as username and the device id as client id: a
handheld may publish only under its own device topic (and its officer's shift and
acknowledgements), and reads only its officer's alert pushes.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import Mosquitto, find_binary

ROOT = Path(__file__).resolve().parents[2]
CITY = "321200"
ACCOUNTS = {
    "citywatch": "svc-pass-1",
    "off-7": "off7-pass",
    "off-8": "off8-pass",
    "casesys": "case-pass",
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
            self.cond.notify_all()

    def ok(self) -> bool:
        return not getattr(self.rc, "is_failure", True)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, 1)
        assert done.wait(10)

    def publish(self, topic: str) -> None:
        self.c.publish(topic, b"{}", qos=1).wait_for_publish(10)

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


def test_the_case_system_publishes_case_events_only(broker: Mosquitto) -> None:
    service = Client(broker.port, "citywatch", ACCOUNTS["citywatch"], "cw-" + uuid.uuid4().hex[:6])
    cases = Client(broker.port, "casesys", ACCOUNTS["casesys"], "casesys-1")
    try:
        service.subscribe("citywatch/#")
        cases.publish(f"citywatch/{CITY}/devices/dev-7/gps")
        cases.publish(f"citywatch/{CITY}/cases/C-1/events")
        assert service.wait_for(f"citywatch/{CITY}/cases/C-1/events") == [
            f"citywatch/{CITY}/cases/C-1/events"
        ]
    finally:
        service.close()
        cases.close()


@pytest.mark.parametrize(("user", "password"), [(None, None), ("off-7", "wrong"), ("nobody", "x")])
def test_no_login_no_connection(broker: Mosquitto, user: str | None, password: str | None) -> None:
    c = Client(broker.port, user, password, "dev-x")
    try:
        assert c.connected.is_set() and not c.ok()
    finally:
        c.close()
