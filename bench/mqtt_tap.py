"""A pass-through TCP proxy in front of the broker that watches MQTT deliveries.

The service under test connects to the tap instead of the broker; every byte is
forwarded unchanged both ways, and the tap reads the MQTT 3.1.1 packets as they
pass to count, per message:

* deliveries: PUBLISH packets on a ``.../gps`` topic from the broker to the
  service (the message is identified by the first ``"seq":N`` of its payload,
  which the fault benchmark makes unique per message);
* redeliveries: deliveries of a message already delivered once, whatever the
  reason (broker resending to a resumed session, a publisher resending);
* acknowledgements: the service's PUBACKs, matched to the delivery by packet id
  on the same connection;
* what was delivered on a connection and not acknowledged when it closed.

While the broker is down the tap does not listen either, so a client is refused
as by the broker itself: the tap closes its port when a connection to the broker
fails or the broker ends a connection and does not answer, and opens it again on
the same port once the broker accepts connections.
Only the standard library is used; one thread per direction per connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

PUBLISH = 3
PUBACK = 4


class PacketReader:
    """Splits a byte stream into MQTT control packets ``(first byte, body)``."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Add ``data``; yield every packet that is now complete."""
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < size and i - pos <= 4:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete:
                break
            end = i + length
            if end > size:
                break
            yield buf[pos], bytes(buf[i:end])
            pos = end
        del buf[:pos]


def first_seq(payload: bytes) -> int | None:
    """The number after the first ``"seq":`` in ``payload`` (the benchmark's message id)."""
    at = payload.find(b'"seq":')
    if at < 0:
        return None
    i = at + 6
    j = i
    while j < len(payload) and 48 <= payload[j] <= 57:
        j += 1
    return int(payload[i:j]) if j > i else None


@dataclass
class TapConnection:
    """One proxied connection: what the broker delivered on it and what was acknowledged."""

    number: int
    delivered: list[int] = field(default_factory=list)
    inflight: dict[int, int] = field(default_factory=dict)
    """Packet id -> message, for deliveries not yet acknowledged."""
    closed: bool = False
    unacked_at_close: list[int] = field(default_factory=list)


class MqttTap:
    """The proxy. ``with MqttTap(broker_port) as tap:`` then point the client at ``tap.port``."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._listen()
        self._lock = threading.Lock()
        self._stopping = False
        self._sockets: set[socket.socket] = set()
        self.connections: list[TapConnection] = []
        self.times_delivered: dict[int, int] = {}
        self.deliveries = 0
        self.dup_flagged = 0
        self.acked: set[int] = set()
        self.refused = 0
        """Connections reset at once because the broker did not answer."""
        self.outages = 0
        """Times the tap stopped listening because the broker was gone."""
        self._thread = threading.Thread(target=self._accept, name="mqtt-tap", daemon=True)

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the tap."""
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> MqttTap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and cut every proxied connection."""
        self._stopping = True
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    # -- statistics ---------------------------------------------------------------

    @property
    def redelivered(self) -> int:
        """Deliveries beyond the first of each message."""
        with self._lock:
            return self.deliveries - len(self.times_delivered)

    def delivered_before(self, conns: list[TapConnection]) -> set[int]:
        """Messages delivered on any of ``conns``."""
        with self._lock:
            return {m for c in conns for m in c.delivered}

    # -- proxying -------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def _broker_reachable(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.broker_port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def _broker_down(self) -> None:
        """Stop listening until the broker accepts connections again."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        self.outages += 1

        def wait_for_broker() -> None:
            while not self._stopping and not self._broker_reachable():
                time.sleep(0.05)
            if not self._stopping:
                self._listen()

        threading.Thread(target=wait_for_broker, daemon=True).start()

    def _check_broker(self) -> None:
        """After the broker ended a connection: is it gone? Watched for a second."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._listener is not None:
            if not self._broker_reachable():
                self._broker_down()
                return
            time.sleep(0.02)

    def _accept(self) -> None:
        while not self._stopping:
            listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except OSError:  # a timeout, or the listener closed meanwhile
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port), timeout=1)
                upstream.settimeout(None)
            except OSError:
                self.refused += 1
                # Reset rather than close, as a refused connection would be.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                self._broker_down()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = TapConnection(len(self.connections) + 1)
                self.connections.append(conn)
                self._sockets.update((client, upstream))
            threading.Thread(
                target=self._pump, args=(upstream, client, conn, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(client, upstream, conn, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, conn: TapConnection, down: bool
    ) -> None:
        reader = PacketReader()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                for first, body in reader.feed(data):
                    if down:
                        self._on_down(first, body, conn)
                    else:
                        self._on_up(first, body, conn)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                by_broker = down and not conn.closed
                if not conn.closed:
                    conn.closed = True
                    conn.unacked_at_close = sorted(conn.inflight.values())
                for s in (src, dst):
                    if s in self._sockets:
                        self._sockets.discard(s)
                        s.close()
            if by_broker and not self._stopping:
                self._check_broker()

    def _on_down(self, first: int, body: bytes, conn: TapConnection) -> None:
        if first >> 4 != PUBLISH:
            return
        qos = (first >> 1) & 3
        tlen = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + tlen]
        if not topic.endswith(b"/gps"):
            return
        pos = 2 + tlen
        pid = 0
        if qos:
            pid = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
        msg = first_seq(body[pos : pos + 256])
        if msg is None:
            return
        with self._lock:
            self.deliveries += 1
            if first & 0x08:
                self.dup_flagged += 1
            self.times_delivered[msg] = self.times_delivered.get(msg, 0) + 1
            conn.delivered.append(msg)
            if qos:
                conn.inflight[pid] = msg

    def _on_up(self, first: int, body: bytes, conn: TapConnection) -> None:
        if first >> 4 != PUBACK or len(body) < 2:
            return
        pid = int.from_bytes(body[:2], "big")
        with self._lock:
            msg = conn.inflight.pop(pid, None)
            if msg is not None:
                self.acked.add(msg)
