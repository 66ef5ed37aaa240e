"""At-least-once MQTT consumer: paho-mqtt with manual acks, driven by the asyncio loop.

paho-mqtt 2.x can leave acknowledgement to the application (``manual_ack``),
which aiomqtt cannot: aiomqtt acknowledges a message before the application
sees it. Here a message is acknowledged only after the sink has stored it.
The client runs on the service's event loop through paho's socket callbacks,
so no thread hands messages over and the GIL is not contended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from citywatch.aio import cancel_and_wait
from citywatch.collectors.config import MqttConfig
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics

log = logging.getLogger(__name__)

_READS_PER_WAKEUP = 512
_RECV_CHUNK = 1 << 16


class _BufferedClient(mqtt.Client):
    """paho's reader asks the socket for one byte, then the length, then the body:
    three system calls per message, which dominate its cost under load. This
    client reads 64 KiB at a time and serves paho's small reads from memory.
    Covered by tests/collectors/test_mqtt_buffer.py against the installed paho.
    """

    _rbuf: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(_RECV_CHUNK)
            if not buf:
                return buf
            pos = 0
        end = pos + bufsize
        self._rbuf, self._rpos = buf, min(end, len(buf))
        return buf[pos:end]

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # No per-topic callbacks are registered, so paho's topic matcher, which it
        # runs for every message, has nothing to find: go straight to on_message.
        self._on_message(self, self._userdata, message)  # type: ignore[misc]

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not consumed yet."""
        return len(self._rbuf) - self._rpos

    def reset_buffer(self) -> None:
        self._rbuf, self._rpos = b"", 0


class MqttSource:
    """Subscribes with a persistent session at QoS 1 and hands out batches of messages.

    Use as an async context manager; it connects in the background and keeps
    reconnecting with backoff. Reading pauses while more than
    ``max_unacked`` messages wait for acknowledgement, so memory stays bounded
    and the broker holds the backlog.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        subscriptions: Sequence[str],
        metrics: CollectorMetrics,
        *,
        qos: int = 1,
    ) -> None:
        self.cfg = cfg
        self.subscriptions = list(subscriptions)
        self.metrics = metrics
        self.qos = qos
        self.epoch = 0
        self._inbox: list[Incoming] = []
        self._has_data = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._unacked = 0
        self._paused = False
        self._sock: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop = asyncio.get_running_loop()
        self._connects = 0
        self.client = self._make_client()

    # -- lifecycle -----------------------------------------------------------------

    def _make_client(self) -> _BufferedClient:
        broker = self.cfg.broker
        c = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(1000)
        c.connect_timeout = self.cfg.connect_timeout
        if broker.username is not None:
            c.username_pw_set(broker.username, broker.password)
        if broker.tls:
            c.tls_set(ca_certs=self.cfg.tls_ca)
            c.tls_insecure_set(self.cfg.tls_insecure)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        return c

    async def __aenter__(self) -> MqttSource:
        self._tasks.append(asyncio.create_task(self._maintain(), name="mqtt-connect"))
        self._tasks.append(asyncio.create_task(self._misc(), name="mqtt-keepalive"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(self._tasks)
        if self._connected.is_set():
            self.client.disconnect()
        self._drop_socket()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _maintain(self) -> None:
        backoff = 0.2
        broker = self.cfg.broker
        while True:
            if self._connected.is_set():
                await self._lost.wait()
                backoff = 0.2
                continue
            try:
                # Probe without blocking the loop; paho's own connect is blocking.
                _, w = await asyncio.wait_for(
                    asyncio.open_connection(broker.host, broker.port), self.cfg.connect_timeout
                )
                w.close()
                self._lost.clear()
                if self._connects == 0:
                    self.client.connect(broker.host, broker.port, int(self.cfg.keepalive))
                else:
                    self.client.reconnect()
                await asyncio.wait_for(self._connected.wait(), self.cfg.connect_timeout)
                continue
            except (OSError, TimeoutError, ssl.SSLError, mqtt.WebsocketConnectionError) as exc:
                log.warning(
                    "broker %s:%s unreachable (%s); retrying in %.1fs",
                    broker.host,
                    broker.port,
                    exc or type(exc).__name__,
                    backoff,
                )
                self._drop_socket()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max)

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._sock is not None:
                self.client.loop_misc()

    # -- paho callbacks (all on the event loop thread) ------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        self.epoch += 1
        self._connects += 1
        if self._connects > 1:
            self.metrics.reconnects.inc()
        self._unacked = 0
        self._resume()
        # Subscribe even when the session was resumed: the configured topic roots may
        # have changed since the session was made. Repeating a subscription is harmless.
        client.subscribe([(t, self.qos) for t in self.subscriptions])
        log.info("connected to broker (session %s)", "resumed" if flags.session_present else "new")
        self.metrics.connected.set(1)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if self._connected.is_set():
            log.warning("disconnected from broker: %s", rc)
        self.metrics.connected.set(0)
        self._connected.clear()
        self._lost.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        self._inbox.append(
            Incoming(topic, bytes(msg.payload), self._now, msg.retain, msg.mid, self.epoch)
        )

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self.client.reset_buffer()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._paused = False
        self._loop.add_reader(sock, self._on_readable)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._drop_socket()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self._acking:
            self._loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _drop_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
            self._sock = None

    def _on_writable(self) -> None:
        self.client.loop_write()

    def _on_readable(self) -> None:
        self._now = time.time()
        inbox = self._inbox
        before = len(inbox)
        start = before
        client = self.client
        # paho reads one packet per loop_read; keep reading while packets come.
        for _ in range(_READS_PER_WAKEUP):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                break
            n = len(inbox)
            if n == before and not client.buffered():
                break
            before = n
            if self._paused:
                break
        got = len(inbox) - start
        if got:
            self._unacked += got
            self._has_data.set()
            if self._unacked >= self.cfg.max_unacked:
                self._pause()
        sock = self._sock
        if (
            sock is not None
            and not self._paused
            and (client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending()))
        ):
            # Data already read into memory raises no readiness event: come back for it.
            self._loop.call_soon(self._on_readable)

    _now = 0.0
    _acking = False

    def _pause(self) -> None:
        if not self._paused and self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._paused = True

    def _resume(self) -> None:
        if self._paused and self._sock is not None:
            self._paused = False
            self._loop.add_reader(self._sock, self._on_readable)
            self._loop.call_soon(self._on_readable)

    # -- the consumer's side --------------------------------------------------------

    async def get_batch(self, max_n: int) -> list[Incoming]:
        """Wait for at least one message; return up to ``max_n`` in arrival order."""
        while not self._inbox:
            self._has_data.clear()
            await self._has_data.wait()
        batch = self._inbox[:max_n]
        del self._inbox[:max_n]
        self.metrics.unacked.set(self._unacked)
        return batch

    def ack(self, msgs: Sequence[Incoming]) -> None:
        """Acknowledge messages once their data is stored (in the order received)."""
        epoch = self.epoch
        client = self.client
        stale = 0
        self._acking = True
        try:
            for m in msgs:
                if m.epoch == epoch:
                    client.ack(m.mid, self.qos)
                else:
                    stale += 1
        finally:
            self._acking = False
        self._flush_writes()
        if stale:
            self.metrics.stale_acks.inc(stale)
        self._unacked = max(0, self._unacked - (len(msgs) - stale))
        if self._paused and self._unacked <= self.cfg.max_unacked // 2:
            self._resume()
        self.metrics.unacked.set(self._unacked)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a message for the broker (paho keeps QoS 1 messages across reconnects)."""
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _flush_writes(self) -> None:
        """Write queued packets now, corked so that a batch of acks leaves in few segments."""
        sock = self._sock
        if sock is None or not self.client.want_write():
            return
        cork = getattr(socket, "TCP_CORK", None)
        if cork is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
        try:
            self.client.loop_write()
        finally:
            if cork is not None and self._sock is sock:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
        if self._sock is sock and self.client.want_write():
            # The socket buffer filled up; paho believes a writer is registered.
            self._loop.add_writer(sock, self._on_writable)
