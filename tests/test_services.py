"""The service fixtures start real, usable servers."""

from __future__ import annotations

import queue
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.services import Influx, Mosquitto

TIMEOUT = 10.0


class MqttClient:
    """A paho client with its network loop in a thread and its callbacks turned into events."""

    def __init__(self, broker: Mosquitto, client_id: str = "", clean_session: bool = True) -> None:
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert not reason_code.is_failure, reason_code
        self.session_present = flags.session_present
        self.connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the PUBACK, i.e. until the broker owns the message."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "no PUBACK"

    def next_message(self) -> mqtt.MQTTMessage:
        """Wait for the next received message."""
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail("no message received")

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_clients() -> Iterator[Callable[..., MqttClient]]:
    clients: list[MqttClient] = []

    def make(broker: Mosquitto, client_id: str = "", clean_session: bool = True) -> MqttClient:
        client = MqttClient(broker, client_id, clean_session)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_mosquitto_qos1_roundtrip(
    mosquitto: Mosquitto, mqtt_clients: Callable[..., MqttClient]
) -> None:
    topic = f"citywatch/test/{uuid.uuid4().hex}"
    subscriber = mqtt_clients(mosquitto)
    subscriber.subscribe(topic)

    mqtt_clients(mosquitto).publish(topic, b"pm25=12.5")

    message = subscriber.next_message()
    assert (message.topic, message.payload, message.qos) == (topic, b"pm25=12.5", 1)
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


def _write(influx: Influx, db: str, line: str) -> None:
    req = urllib.request.Request(
        f"{influx.url}/write?db={db}&precision=ns", data=line.encode(), method="POST"
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req) as resp:
        assert resp.status == 204


def test_influx_write_and_read_back(influx: Influx, influx_db: str) -> None:
    _write(influx, influx_db, "air,district=d7,sensor=s1 pm25=12.5,ok=true 1700000000000000000")

    assert influx.points("air", influx_db) == [
        {"time": 1700000000000000000, "district": "d7", "sensor": "s1", "pm25": 12.5, "ok": True}
    ]
    assert influx.count("air", influx_db) == 1
    assert influx.count("air", influx_db, where="\"sensor\" = 'other'") == 0
    assert influx.count("missing", influx_db) == 0
    assert influx.points("missing", influx_db) == []


def test_persistent_session_survives_broker_restart(
    make_mosquitto: Callable[[], Mosquitto], mqtt_clients: Callable[..., MqttClient]
) -> None:
    broker = make_mosquitto()
    topic = "citywatch/test/durable"
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"

    subscriber = mqtt_clients(broker, client_id, clean_session=False)
    subscriber.subscribe(topic)
    subscriber.close()

    # Queued for the offline durable session once the broker has acked it.
    mqtt_clients(broker).publish(topic, b"queued while offline")

    port = broker.port
    broker.restart()
    assert broker.port == port

    subscriber = mqtt_clients(broker, client_id, clean_session=False)
    assert subscriber.session_present is True
    message = subscriber.next_message()
    assert (message.topic, message.payload, message.qos) == (topic, b"queued while offline", 1)


def test_private_influx_keeps_port_and_data_across_restart(
    make_influx: Callable[[], Influx],
) -> None:
    server = make_influx()
    server.create_db("city")
    _write(server, "city", "noise,sensor=n1 db=61.0 1700000000000000000")

    port = server.port
    server.restart()

    assert server.port == port
    assert server.count("noise", "city") == 1
