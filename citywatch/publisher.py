"""Publishing the service's own output over MQTT: the dead letters of refused records.

aiomqtt suits this side: it publishes QoS 1 messages and awaits the broker's
acknowledgement. Messages wait in a bounded queue while the broker is away;
what does not fit is dropped and counted, never blocking the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import aiomqtt
from prometheus_client import CollectorRegistry

from citywatch.aio import cancel_and_wait
from citywatch.config import BrokerAddress
from citywatch.metrics import MetricSet
from citywatch.mqtt_link import MqttLink

log = logging.getLogger(__name__)


class PublisherMetrics(MetricSet):
    """Published, dropped and queued output messages."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.published = self.counter(
            "citywatch_publish_messages", "Output messages acknowledged by the broker"
        )
        self.dropped = self.counter(
            "citywatch_publish_dropped", "Output messages dropped because the queue was full"
        )
        self.queued = self.gauge(
            "citywatch_publish_queued", "Output messages waiting for the broker"
        )


class MqttPublisher:
    """A QoS 1 publisher with a bounded queue, over an :class:`MqttLink`; an async CM."""

    def __init__(
        self,
        broker: BrokerAddress,
        client_id: str,
        metrics: PublisherMetrics,
        *,
        max_queue: int = 10_000,
        tls_ca: str | None = None,
        reconnect_max: float = 30.0,
    ) -> None:
        self.client_id = client_id
        self.metrics = metrics
        self.link = MqttLink(broker, client_id, tls_ca=tls_ca, reconnect_max=reconnect_max)
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def __aenter__(self) -> MqttPublisher:
        await self.link.__aenter__()
        self._task = asyncio.create_task(self._run(), name=f"publish-{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait([self._task])
        await self.link.__aexit__(exc_type, exc, tb)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return ([self._task] if self._task is not None else []) + self.link.tasks

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Queue a message; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((topic, payload, retain))
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            return False
        self.metrics.queued.set(self._queue.qsize())
        return True

    async def _run(self) -> None:
        pending: tuple[str, bytes, bool] | None = None
        while True:
            client = await self.link.ready()
            try:
                while True:
                    if pending is None:
                        pending = await self._queue.get()
                    topic, payload, retain = pending
                    await client.publish(topic, payload, qos=1, retain=retain)
                    pending = None
                    self.metrics.published.inc()
                    self.metrics.queued.set(self._queue.qsize())
            except aiomqtt.MqttError as exc:
                # The message waits for the link's next connection; the link logs the drop.
                log.debug("publisher %s: %s", self.client_id, exc)
                await asyncio.sleep(0.2)
