"""The collector's paho client overrides two of paho's private methods: hold them to the
installed paho, and check that buffered reads hand over every message whole."""

from __future__ import annotations

import asyncio
import inspect
import random

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import MqttConfig
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.mqtt import MqttSource, _BufferedClient
from tests.helpers import Publisher
from tests.services import Mosquitto


def test_the_private_methods_overridden_are_still_paho_s() -> None:
    # _sock_recv(bufsize) is where paho reads the socket; _handle_on_message(message) is
    # where it dispatches a message, calling self._on_message(self, self._userdata, msg).
    # A paho release that renames or reshapes them must fail here, not in production.
    assert list(inspect.signature(mqtt.Client._sock_recv).parameters) == ["self", "bufsize"]
    assert list(inspect.signature(mqtt.Client._handle_on_message).parameters) == [
        "self",
        "message",
    ]
    source = inspect.getsource(mqtt.Client._handle_on_message)
    assert "self._on_message" in source and "self._userdata" in source
    client = _BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="pin")
    assert hasattr(client, "_on_message") and hasattr(client, "_userdata")


async def test_buffered_reads_hand_over_every_message_whole(mosquitto: Mosquitto) -> None:
    # Sizes from 1 byte to 200 KB, so messages straddle the 64 KiB reads in every way.
    rng = random.Random(7)
    sizes = [
        rng.choice((1, 2, 127, 128, 16_383, 16_384, 65_535, 65_536, 200_000)) for _ in range(300)
    ]
    bodies = {f"m{i}": rng.randbytes(n) for i, n in enumerate(sizes)}
    cfg = MqttConfig(url=mosquitto.url, client_id="buffer-test")
    got: dict[str, bytes] = {}
    async with MqttSource(cfg, ["buffer/#"], CollectorMetrics(CollectorRegistry())) as source:
        await source.wait_connected(10)
        with Publisher(mosquitto.port) as pub:
            await asyncio.to_thread(pub.send_all, [(f"buffer/{k}", v) for k, v in bodies.items()])
        while len(got) < len(bodies):
            batch = await asyncio.wait_for(source.get_batch(1000), 10)
            got.update((m.topic.removeprefix("buffer/"), m.payload) for m in batch)
            source.ack(batch)
    assert got == bodies
