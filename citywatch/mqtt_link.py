"""One kept-up aiomqtt connection for the service's own output (dead letters, alert pushes).

A background task connects, and reconnects with exponential backoff after a
drop; :attr:`MqttLink.client` is the connected client, or None while there is
none. Users publish on it with QoS 1 and treat :class:`aiomqtt.MqttError` as
"try again once the link is back" (:meth:`MqttLink.ready`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import TracebackType

import aiomqtt

from citywatch.aio import cancel_and_wait
from citywatch.config import BrokerAddress

log = logging.getLogger(__name__)


class MqttLink:
    """A reconnecting aiomqtt client; an async context manager owning its task."""

    def __init__(
        self,
        broker: BrokerAddress,
        client_id: str,
        *,
        tls_ca: str | None = None,
        timeout: float = 10.0,
        reconnect_max: float = 30.0,
        max_inflight: int = 20,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.timeout = timeout
        self.reconnect_max = reconnect_max
        self.max_inflight = max_inflight
        self._tls = ssl.create_default_context(cafile=tls_ca) if broker.tls else None
        self.client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def __aenter__(self) -> MqttLink:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            # aiomqtt awaits its CONNACK with asyncio.wait_for, which in Python 3.11 drops
            # a cancellation that arrives as the CONNACK does: the task then connects and
            # waits on. Cancel again until it has ended.
            while not (await asyncio.wait([task], timeout=1.0))[0]:
                task.cancel()
        await cancel_and_wait([task])

    async def ready(self) -> aiomqtt.Client:
        """The connected client, once there is one."""
        while self.client is None:
            await self._up.wait()
        return self.client

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the connection (a start-up nicety, never required)."""
        try:
            async with asyncio.timeout(timeout):
                await self.ready()
        except TimeoutError:
            return False
        return True

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
                    max_inflight_messages=self.max_inflight,
                ) as client:
                    # Batches are published at once: that many pending PUBACKs are expected.
                    client.pending_calls_threshold = 100_000
                    self.client = client
                    self._up.set()
                    backoff = 0.2
                    log.info("%s connected to %s", self.client_id, self.broker)
                    async for _ in client.messages:
                        pass  # nothing is subscribed: this only waits for a disconnection
            except aiomqtt.MqttError as exc:
                log.warning("%s: %s; reconnecting in %.1fs", self.client_id, exc, backoff)
            finally:
                self.client = None
                self._up.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max)
