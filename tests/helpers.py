"""Helpers for end-to-end tests: settings for real servers, a publisher, waiting on conditions."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citywatch.app.settings import Settings, load_settings


def settings_for(
    mqtt_url: str,
    influx_url: str,
    db: str,
    data_dir: Path,
    **sections: dict[str, Any],
) -> Settings:
    """Settings pointing at the test servers, with short flush intervals and a unique client id."""
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "mqtt": {"url": mqtt_url, "client_id": f"cw-{uuid.uuid4().hex[:10]}"},
        "influx": {"url": influx_url, "db": db, "flush_interval": "100ms", "retry_max": "1s"},
        "api": {"addr": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = data_dir / "citywatch.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return load_settings(path, env={})


def with_client_id(settings: Settings, client_id: str) -> Settings:
    return dataclasses.replace(
        settings, mqtt=dataclasses.replace(settings.mqtt, client_id=client_id)
    )


class Publisher:
    """A paho publisher at QoS 1 that waits for the broker's acknowledgements."""

    def __init__(self, port: int, client_id: str | None = None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(
        self, topic: str, payload: bytes | dict[str, Any] | list[Any] | str, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        body = payload if isinstance(payload, bytes | str) else orjson.dumps(payload)
        return self.client.publish(topic, body, qos=1, retain=retain)

    def send_all(self, items: Iterable[tuple[str, Any]], timeout: float = 30) -> None:
        infos = [self.send(t, p) for t, p in items]
        for info in infos:
            info.wait_for_publish(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listener:
    """Subscribes to a topic filter and collects what arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"lis-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 15) -> list[tuple[str, bytes]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise TimeoutError(f"got {len(self.messages)} of {n} messages")
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    """Poll ``predicate`` until true (short interval, hard deadline)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def await_until(
    predicate: Callable[[], bool], timeout: float = 20, what: str = "condition"
) -> None:
    """The asyncio form of :func:`wait_until`; checks without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(predicate):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
