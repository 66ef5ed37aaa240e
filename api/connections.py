"""Connections to the HTTP server: deadlines for slow clients, a cap, accepting with back-off.

aiohttp waits for a request's head and body as long as the client takes, and
asyncio's accept loop logs every failed ``accept()`` once the process is out of
file descriptors. A client sending a byte now and then (slowloris) thus holds a
connection, and a thousand of them every file descriptor, for as long as they like.

:class:`GuardedSite` listens in place of aiohttp's ``TCPSite`` and hands each
connection to aiohttp's request handler through a :class:`_Watched` protocol that
keeps its deadlines:

- ``api.header_timeout``: the request line and headers must all arrive within it,
  counted from the accept, or from the first byte of the next request on a kept-alive
  connection. Bytes trickling in do not extend it. Past it: 408 and the connection closed.
- ``api.body_timeout``: a declared body must all arrive within it of the headers.
- ``api.idle_timeout``: a kept-alive connection with no request in it is closed.

At ``api.max_connections`` a new connection makes room by closing the one that has
waited longest without a request being handled (idle, or still sending its head or
body); when every connection is busy with a request, the new one gets 503. When
``accept()`` fails for want of file descriptors, the site closes such a waiting
connection too, and otherwise retries after a back-off (50 ms doubling to 1 s)
instead of spinning.

Each condition is logged once when it starts and once, with counts, when it ends:
the limit reached (ends below 90% of it), clients too slow (ends when none has timed
out for ``header_timeout + body_timeout``) and ``accept()`` failing (ends below 90%
of the connections open when it began). The metrics count every case.

The phases of a connection come from the protocol's own events (bytes arriving) and
from :func:`track_requests`, the application's outermost middleware, which marks when
a request's head is complete (its handler starts) and when its handler is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from citywatch.api.config import ApiConfig
from citywatch.metrics import MetricSet

log = logging.getLogger(__name__)

HEAD, BODY, BUSY, IDLE = "head", "body", "busy", "idle"
"""Phases: sending a head; sending a body; a request handled (nothing to wait for); idle."""

_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
FD_RESERVE = 64
"""Files the rest of the process needs beside its HTTP connections (state, spool, MQTT)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _raw_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for when no handler runs."""
    body = orjson.dumps({"error": {"status": status, "message": message}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_408 = _raw_response(408, "Request Timeout", "the request head did not arrive in time")
_503 = _raw_response(503, "Service Unavailable", "too many connections: try again later")


class ConnectionMetrics(MetricSet):
    """``citywatch_http_*``: open connections, and why the server closed or refused some."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.open = self.gauge("citywatch_http_connections", "Open HTTP connections")
        self.closed = self.counter(
            "citywatch_http_connections_closed",
            "HTTP connections the server closed: header_timeout, body_timeout, idle_timeout, "
            "or evicted (to make room at the limit, or when out of file descriptors)",
            ["reason"],
        )
        self.refused = self.counter(
            "citywatch_http_connections_refused",
            "HTTP connections answered 503 at api.max_connections, every one busy",
        )
        self.accept_errors = self.counter(
            "citywatch_http_accept_errors", "Failed accept() calls (e.g. out of file descriptors)"
        )


class _Episode:
    """A condition: logged once when it starts and once, with what happened, when it ends."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.tally: Tally[str] = Tally()
        self.level = 0  # what "ended" is measured against (connections open at the start)
        self.timer: asyncio.TimerHandle | None = None
        self.last = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, now: float, message: str, *args: object) -> bool:
        """Start (and log) the condition unless it is on; True if it started now."""
        if self.since is not None:
            return False
        self.since = now
        self.tally.clear()
        log.warning(message, *args)
        return True

    def end(self, now: float, message: str, *args: object) -> None:
        """End (and log, with the seconds it lasted first) the condition if it is on."""
        if self.since is None:
            return
        lasted = now - self.since
        self.since = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        log.info(message, lasted, *args)


class ConnectionGuard:
    """The connections of one application's server, their deadlines and the limit."""

    def __init__(self, cfg: ApiConfig, metrics: ConnectionMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self._conns: dict[asyncio.BaseTransport, _Watched] = {}
        # Connections with no request being handled, longest waiting first: evicted first.
        self._waiting: OrderedDict[_Watched, None] = OrderedDict()
        self._full = _Episode()
        self._slow = _Episode()
        self._accept = _Episode()

    def connection(self, transport: asyncio.BaseTransport | None) -> _Watched | None:
        return None if transport is None else self._conns.get(transport)

    def protocol(self, inner: asyncio.Protocol) -> _Watched:
        """Wrap aiohttp's protocol for one accepted connection."""
        return _Watched(self, inner, asyncio.get_running_loop())

    def admit(self, now: float) -> bool:
        """Whether to take one more connection, making room at the limit if any waits."""
        cap = self.cfg.max_connections
        if len(self._conns) < cap:
            return True
        self._full.begin(
            now,
            "connection limit reached (%d): closing the connections waiting longest for a "
            "request, refusing new ones (503) while every connection is busy",
            cap,
        )
        if self._evict_oldest():
            self._full.tally["evicted"] += 1
            return True
        self._full.tally["refused"] += 1
        self.metrics.refused.inc()
        return False

    def accept_failed(self, now: float, exc: BaseException) -> bool:
        """Note a failed ``accept()``; True if a waiting connection was closed to free a file."""
        self.metrics.accept_errors.inc()
        started = self._accept.begin(
            now,
            "accept() fails (%s) with %d connections open: retrying with back-off, and closing "
            "connections that wait for a request while out of files",
            exc,
            len(self._conns),
        )
        if started:
            self._accept.level = len(self._conns)
        self._accept.tally["failures"] += 1
        out_of_files = isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS
        if out_of_files and self._evict_oldest():
            self._accept.tally["evicted"] += 1
            return True
        return False

    def accepted(self, now: float) -> None:
        """Note a successful ``accept()``."""
        if self._accept.active and len(self._conns) <= self._accept.level * 9 // 10:
            self._accept_ended(now)

    def check_fd_limit(self) -> None:
        """Warn at start-up when the open-file limit is below what the cap needs."""
        try:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):
            return
        if soft != resource.RLIM_INFINITY and soft < self.cfg.max_connections + FD_RESERVE:
            log.warning(
                "api.max_connections is %d but this process may open only %d files: raise "
                "the limit (ulimit -n, LimitNOFILE=) or lower api.max_connections",
                self.cfg.max_connections,
                soft,
            )

    def close(self) -> None:
        """Cancel the condition timers (the site stopped)."""
        for episode in (self._full, self._slow, self._accept):
            if episode.timer is not None:
                episode.timer.cancel()
                episode.timer = None

    # --- called by _Watched

    def _opened(self, c: _Watched) -> None:
        assert c.transport is not None
        self._conns[c.transport] = c
        self.metrics.open.inc()

    def _drop(self, c: _Watched) -> bool:
        """Stop counting ``c``; False if it was not counted (closed by the server before)."""
        self._waiting.pop(c, None)
        if c.transport is None or self._conns.pop(c.transport, None) is None:
            return False
        self.metrics.open.dec()
        return True

    def _forget(self, c: _Watched) -> None:
        """``c`` closed: the conditions measured by open connections may have ended."""
        if not self._drop(c):
            return  # evicted: its place went to a new connection, so nothing ended
        now = c.loop.time()
        n = len(self._conns)
        if self._full.active and n <= self.cfg.max_connections * 9 // 10:
            t = self._full.tally
            self._full.end(
                now,
                "connections below the limit again after %.1fs: %d waiting connections "
                "closed to make room, %d refused",
                t["evicted"],
                t["refused"],
            )
        if self._accept.active and n <= self._accept.level * 9 // 10:
            self._accept_ended(now)

    def _accept_ended(self, now: float) -> None:
        t = self._accept.tally
        self._accept.end(
            now,
            "accept() works again after %.1fs: %d failures, %d waiting connections closed",
            t["failures"],
            t["evicted"],
        )

    def _waits(self, c: _Watched, waiting: bool) -> None:
        if waiting:
            self._waiting[c] = None
            self._waiting.move_to_end(c)
        else:
            self._waiting.pop(c, None)

    def _evict_oldest(self) -> bool:
        if not self._waiting:
            return False
        oldest, _ = self._waiting.popitem(last=False)
        self.metrics.closed.labels("evicted").inc()
        oldest.abort()
        return True

    def _timed_out(self, c: _Watched, reason: str) -> None:
        self.metrics.closed.labels(reason).inc()
        if reason == "idle_timeout":
            return  # a kept-alive connection's normal end
        cfg = self.cfg
        now = c.loop.time()
        self._slow.begin(
            now,
            "closing connections too slow to send their request (api.header_timeout %gs, "
            "api.body_timeout %gs)",
            cfg.header_timeout,
            cfg.body_timeout,
        )
        self._slow.tally[reason] += 1
        self._slow.last = now
        if self._slow.timer is None:
            self._slow_check(c.loop)

    def _slow_check(self, loop: asyncio.AbstractEventLoop) -> None:
        # Ends once a whole header_timeout + body_timeout passed without a slow client:
        # any client of the same wave would have timed out within it.
        quiet = self.cfg.header_timeout + self.cfg.body_timeout
        now = loop.time()
        self._slow.timer = None
        if now - self._slow.last >= quiet:
            t = self._slow.tally
            self._slow.end(
                now,
                "no more slow connections after %.1fs: closed %d before their headers were "
                "complete, %d before their body was",
                t["header_timeout"],
                t["body_timeout"],
            )
            return
        self._slow.timer = loop.call_at(self._slow.last + quiet, self._slow_check, loop)


class _Watched(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the deadline of the phase it is in."""

    def __init__(
        self, guard: ConnectionGuard, inner: asyncio.Protocol, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.guard = guard
        self.inner = inner
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.phase = HEAD
        self.handling = False
        self.head_started = False
        self.writing_paused = False
        self.request: web.BaseRequest | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol, passed on to aiohttp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.guard._opened(self)
        self._enter(HEAD, self.guard.cfg.header_timeout)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if data and self.phase == IDLE:
            self._enter(HEAD, self.guard.cfg.header_timeout)
        if data and self.phase == HEAD:
            self.head_started = True
        self.inner.data_received(data)
        if self.phase == BODY and (self.request is None or self.request.content.is_eof()):
            self._body_complete()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.guard._forget(self)
        self.request = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.inner.resume_writing()

    # --- from track_requests

    def request_started(self, request: web.BaseRequest) -> None:
        """The head is complete and its handler starts."""
        self.handling = True
        self.head_started = False
        if request.content.is_eof():
            self._enter(BUSY)
        else:
            self.request = request
            self._enter(BODY, self.guard.cfg.body_timeout)

    def request_finished(self) -> None:
        """The handler is done (its answer is being sent)."""
        self.handling = False
        if self.phase == BODY:
            return  # aiohttp reads and drops the rest of the body, on the same deadline
        self.request = None
        self._enter(IDLE, self.guard.cfg.idle_timeout)

    # --- deadlines

    def _body_complete(self) -> None:
        self.request = None
        if self.handling:
            self._enter(BUSY)
        else:
            self._enter(IDLE, self.guard.cfg.idle_timeout)

    def _enter(self, phase: str, timeout: float | None = None) -> None:
        self.phase = phase
        self._cancel_timer()
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._expired)
        self.guard._waits(self, phase != BUSY)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.phase == IDLE and self.writing_paused:
            # Still sending the last answer to a slow reader: not idle yet.
            self._timer = self.loop.call_later(self.guard.cfg.idle_timeout, self._expired)
            return
        reason = {HEAD: "header_timeout", BODY: "body_timeout", IDLE: "idle_timeout"}[self.phase]
        self.guard._waiting.pop(self, None)
        self.guard._timed_out(self, reason)
        if self.phase == HEAD and self.head_started:
            transport.write(_408)
        transport.close()

    def abort(self) -> None:
        """Close now, dropping anything unsent (to free the file descriptor at once)."""
        self._cancel_timer()
        if self.transport is not None:
            self.guard._drop(self)
            self.transport.abort()


GUARD = web.AppKey("connection_guard", ConnectionGuard)


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection's guard when a request's handler starts and ends."""
    conn = request.app[GUARD].connection(request.transport)
    if conn is None:  # served by another site (tests' TestServer)
        return await handler(request)
    conn.request_started(request)
    try:
        return await handler(request)
    finally:
        conn.request_finished()


class GuardedSite(web.BaseSite):
    """Listens on ``host:port`` and serves ``runner``'s application through its guard."""

    __slots__ = ("_guard", "_handlers", "_host", "_listen_backlog", "_port", "_sockets", "_tasks")

    def __init__(self, runner: web.AppRunner, host: str, port: int, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        assert runner.server is not None  # BaseSite checked: the runner is set up
        # aiohttp's protocol factory: one request handler (protocol) per connection.
        self._handlers = runner.server
        self._host = host
        self._port = port
        self._listen_backlog = backlog
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._guard = runner.app[GUARD]

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one picked, for port 0)."""
        if not self._sockets:
            return self._port
        port: int = self._sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._sockets = await _listen(loop, self._host, self._port, self._listen_backlog)
        self._guard.check_fd_limit()
        for i, sock in enumerate(self._sockets):
            self._tasks.append(loop.create_task(self._serve(sock), name=f"http-accept-{i}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sock in self._sockets:
            sock.close()
        self._guard.close()
        await super().stop()

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        guard = self._guard
        server = self._handlers
        delay = BACKOFF_MIN
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # the client gave up before we took it
            except OSError as exc:
                if guard.accept_failed(loop.time(), exc):
                    # A file descriptor is being freed: take the next one right after.
                    await asyncio.sleep(0.01)
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_MIN
            try:
                guard.accepted(loop.time())
                if not guard.admit(loop.time()):
                    _refuse(conn)
                    continue
                await loop.connect_accepted_socket(lambda: guard.protocol(server()), conn)
            except OSError:
                conn.close()  # reset before it was set up: nothing to serve
            except Exception as exc:
                # Never let the loop die: the server would stop taking connections, silently.
                conn.close()
                guard.accept_failed(loop.time(), exc)
                await asyncio.sleep(delay)


def _refuse(conn: socket.socket) -> None:
    """Answer 503 and close, without a handler (best effort: the client may be gone)."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(_503)
    conn.close()


async def _listen(
    loop: asyncio.AbstractEventLoop, host: str, port: int, backlog: int
) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (like ``loop.create_server``)."""
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does, so both can bind the port.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {addr!r}: {exc.strerror}") from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
