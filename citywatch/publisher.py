"""Publishing the service's own output over MQTT: dead letters now, alert pushes next.

aiomqtt suits this side: it publishes QoS 1 messages and awaits the broker's
acknowledgement. Messages wait in a bounded queue while the broker is away;
what does not fit is dropped and counted, never blocking the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import TracebackType

import aiomqtt
from prometheus_client import CollectorRegistry, Counter, Gauge

from citywatch.aio import cancel_and_wait
from citywatch.config import BrokerAddress

log = logging.getLogger(__name__)


class PublisherMetrics:
    """Published, dropped and queued output messages."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "citywatch_publish_messages",
            "Output messages acknowledged by the broker",
            registry=registry,
        )
        self.dropped = Counter(
            "citywatch_publish_dropped",
            "Output messages dropped because the queue was full",
            registry=registry,
        )
        self.queued = Gauge(
            "citywatch_publish_queued", "Output messages waiting for the broker", registry=registry
        )


class MqttPublisher:
    """A reconnecting QoS 1 publisher with a bounded queue; an async context manager."""

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
        self.broker = broker
        self.client_id = client_id
        self.metrics = metrics
        self.reconnect_max = reconnect_max
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(max_queue)
        self._tls = ssl.create_default_context(cafile=tls_ca) if broker.tls else None
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self._run(), name=f"publish-{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait([self._task])

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Queue a message; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((topic, payload, retain))
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            return False
        self.metrics.queued.set(self._queue.qsize())
        return True

    async def drained(self) -> None:
        """Wait until every queued message has been acknowledged by the broker."""
        await self._queue.join()

    async def _run(self) -> None:
        backoff = 0.2
        pending: tuple[str, bytes, bool] | None = None
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    identifier=self.client_id,
                    tls_context=self._tls,
                    timeout=10,
                ) as client:
                    self.connected = True
                    backoff = 0.2
                    while True:
                        if pending is None:
                            pending = await self._queue.get()
                        topic, payload, retain = pending
                        await client.publish(topic, payload, qos=1, retain=retain)
                        pending = None
                        self._queue.task_done()
                        self.metrics.published.inc()
                        self.metrics.queued.set(self._queue.qsize())
            except aiomqtt.MqttError as exc:
                self.connected = False
                log.warning("publisher %s: %s; retrying in %.1fs", self.client_id, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max)
