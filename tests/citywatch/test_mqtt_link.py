"""The kept-up MQTT link stops when told to, also as its connection completes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest

from citywatch.app.settings import load_settings
from citywatch.mqtt_link import MqttLink
from tests.services import Mosquitto


async def test_a_link_stopped_as_its_connection_completes_stops(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = load_settings(None, env={"CITYWATCH_MQTT_URL": mosquitto.url}).mqtt.broker
    link = MqttLink(broker, "link-stopped-at-connack")
    stopping: list[asyncio.Task[None]] = []
    init = aiomqtt.Client.__init__

    def stop_at_connack(self: aiomqtt.Client, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # The service stops just as the broker accepts the connection (e.g. a state store
        # found unusable while the link connects): the stop lands on that very instant.
        self._connected.add_done_callback(
            lambda _: stopping.append(asyncio.create_task(link.__aexit__(None, None, None)))
        )

    monkeypatch.setattr(aiomqtt.Client, "__init__", stop_at_connack)
    await link.__aenter__()
    async with asyncio.timeout(10):
        while not stopping:
            await asyncio.sleep(0.01)
    # Not awaited under a timeout: cancelling the wait would cancel the stop and free it.
    done, _ = await asyncio.wait(stopping, timeout=5)
    try:
        assert done, "the link did not stop"
    finally:
        link._task.cancel()  # type: ignore[union-attr]
        await asyncio.wait(stopping)
