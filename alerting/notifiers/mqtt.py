"""MQTT push: what patrol leads' handhelds subscribe to.

Each notification is published to ``{root}/{city}/alerts/{receiver}`` with
QoS 1 as the JSON of :meth:`Notification.to_json`; a call returns once the
broker has acknowledged every message (PUBACK), so the outbox marks a
notification delivered only when the broker holds it. The connection is kept
by a background task that reconnects with backoff; while it is down, a call
fails as retryable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import Sequence
from types import TracebackType

import aiomqtt
import orjson

from alerting.notifiers.base import Notification, NotifyError
from citywatch.aio import cancel_and_wait
from citywatch.config import BrokerAddress

log = logging.getLogger(__name__)


def alert_topic(root: str, city: str, receiver: str) -> str:
    """The topic a receiver's alerts are pushed to."""
    return f"{root}/{city}/alerts/{receiver}"


class MqttPush:
    """A :class:`~alerting.notifiers.base.Notifier` over MQTT; an async context manager."""

    def __init__(
        self,
        broker: BrokerAddress,
        client_id: str,
        topic_root: str,
        *,
        tls_ca: str | None = None,
        timeout: float = 10.0,
        reconnect_max: float = 30.0,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.topic_root = topic_root
        self.timeout = timeout
        self.reconnect_max = reconnect_max
        self._tls = ssl.create_default_context(cafile=tls_ca) if broker.tls else None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def __aenter__(self) -> MqttPush:
        self._task = asyncio.create_task(self._run(), name=f"push-{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait([self._task])

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the connection (a start-up nicety, never required)."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def notify(self, alerts: Sequence[Notification]) -> None:
        client = self._client
        if client is None:
            raise NotifyError(
                f"not connected to {self.broker.host}:{self.broker.port}", retryable=True
            )
        now = time.time()
        try:
            await asyncio.gather(
                *(
                    client.publish(
                        alert_topic(self.topic_root, n.city, n.receiver),
                        orjson.dumps(dataclasses.replace(n, sent_at=now).to_json()),
                        qos=1,
                        timeout=self.timeout,
                    )
                    for n in alerts
                )
            )
        except aiomqtt.MqttError as exc:
            raise NotifyError(f"MQTT publish failed: {exc}", retryable=True) from None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    identifier=self.client_id,
                    tls_context=self._tls,
                    timeout=self.timeout,
                    max_inflight_messages=1000,
                ) as client:
                    # A batch is published at once; that many pending PUBACKs are expected.
                    client.pending_calls_threshold = 100_000
                    self._client = client
                    self._connected.set()
                    backoff = 0.2
                    log.info("alert push connected to %s:%s", self.broker.host, self.broker.port)
                    async for _ in client.messages:
                        pass  # nothing is subscribed: this only waits for a disconnection
            except aiomqtt.MqttError as exc:
                log.warning("alert push: %s; reconnecting in %.1fs", exc, backoff)
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max)
