"""MQTT push: what patrol leads' handhelds subscribe to.

Each notification is published to ``{root}/{city}/alerts/{receiver}`` with
QoS 1 as the JSON of :meth:`Notification.to_json`; a call returns once the
broker has acknowledged every message (PUBACK), so the outbox marks a
notification delivered only when the broker holds it. The connection is a
:class:`~citywatch.mqtt_link.MqttLink`; while it is down, a call fails as
retryable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from types import TracebackType

import aiomqtt
import orjson

from citywatch.alerting.notifiers.base import Notification, NotifyError
from citywatch.config import BrokerAddress
from citywatch.mqtt_link import MqttLink
from citywatch.topics import alert_topic


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
        self.topic_root = topic_root
        self.timeout = timeout
        self.link = MqttLink(
            broker,
            client_id,
            tls_ca=tls_ca,
            timeout=timeout,
            reconnect_max=reconnect_max,
            max_inflight=1000,
        )

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return self.link.tasks

    async def __aenter__(self) -> MqttPush:
        await self.link.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.link.__aexit__(exc_type, exc, tb)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the connection (a start-up nicety, never required)."""
        return await self.link.wait_connected(timeout)

    async def notify(self, alerts: Sequence[Notification]) -> None:
        client = self.link.client
        if client is None:
            raise NotifyError(f"not connected to {self.link.broker}", retryable=True)
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
