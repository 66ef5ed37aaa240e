"""The live stream's hub: numbered events, a backlog for resuming, bounded client queues.

Every event (an alert change, a position) gets the next sequence number and is
kept in a backlog of ``api.stream_backlog`` events. A client's resume token
names the process run and the last sequence it saw; reconnecting with it
replays exactly what it missed, or, if that fell out of the backlog or the
process restarted, a ``reset`` telling it to reload the lists. A client that
cannot keep up (its queue of ``queue_max`` events is full) loses positions
first (a newer one supersedes them; counted); only an alert change that does
not fit disconnects it with ``reset``, rather than slowing everyone.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from citywatch.api.auth import Principal
from citywatch.metrics import MetricSet

_SEQ = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Event:
    """One stream event; ``body`` is its JSON, encoded once for every client."""

    seq: int
    kind: str
    city: str
    grids: tuple[str, ...]
    text: str
    """The JSON, encoded once for every client (sent as a text frame)."""


@dataclass
class Filter:
    """What one client wants: event kinds, a city, a grid prefix; and what it may see."""

    principal: Principal
    kinds: frozenset[str] = frozenset({"alert", "position"})
    city: str | None = None
    grid: str | None = None

    def wants(self, e: Event) -> bool:
        if e.kind not in self.kinds:
            return False
        if self.city is not None and e.city != self.city:
            return False
        if self.grid is not None and not any(g.startswith(self.grid) for g in e.grids):
            return False
        if not e.grids:
            return self.principal.sees(e.city, None)
        return any(self.principal.sees(e.city, g) for g in e.grids)


@dataclass(eq=False)
class Subscriber:
    filter: Filter
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(10_000))
    overflowed: bool = False


class StreamMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.clients = self.gauge("citywatch_stream_clients", "Connected stream clients")
        self.events = self.counter(
            "citywatch_stream_events", "Events published to the stream", ["kind"]
        )
        self.dropped = self.counter(
            "citywatch_stream_clients_dropped",
            "Stream clients disconnected because they could not keep up",
        )
        self.thinned = self.counter(
            "citywatch_stream_positions_thinned",
            "Position events not sent to a client whose queue was full",
        )


class Hub:
    """Publishes events to subscribers and keeps a backlog for resume tokens."""

    def __init__(self, backlog: int, metrics: StreamMetrics, queue_max: int = 10_000) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.metrics = metrics
        self.queue_max = queue_max
        self._seq = itertools.count(1)
        self.last = 0
        self._backlog: deque[Event] = deque(maxlen=backlog)
        self._subs: set[Subscriber] = set()
        self.per_caller: dict[str, int] = {}

    def token(self, seq: int) -> str:
        return f"{self.run}.{seq}"

    def publish(self, kind: str, city: str, grids: Iterable[str], doc: dict[str, Any]) -> None:
        seq = next(self._seq)
        self.last = seq
        doc = {"type": kind, "seq": seq, "resume": self.token(seq), **doc}
        e = Event(seq, kind, city, tuple(grids), orjson.dumps(doc).decode())
        self._backlog.append(e)
        self.metrics.events.labels(kind).inc()
        for sub in self._subs:
            if sub.overflowed or not sub.filter.wants(e):
                continue
            try:
                sub.queue.put_nowait(e)
            except asyncio.QueueFull:
                if kind == "position":
                    self.metrics.thinned.inc()
                    continue
                sub.overflowed = True  # its handler sends reset and closes
                self.metrics.dropped.inc()

    def subscribe(self, flt: Filter, resume: str | None) -> tuple[Subscriber, list[Event] | None]:
        """A new subscriber, and the events it missed (None: it must reset)."""
        sub = Subscriber(flt, asyncio.Queue(self.queue_max))
        name = flt.principal.name
        self.per_caller[name] = self.per_caller.get(name, 0) + 1
        missed: list[Event] | None = []
        if resume:
            run, _, seq_text = resume.partition(".")
            seq = int(seq_text) if _SEQ.fullmatch(seq_text) else -1
            oldest = self._backlog[0].seq if self._backlog else self.last + 1
            if run != self.run or seq < oldest - 1 or seq > self.last:
                missed = None
            else:
                missed = [e for e in self._backlog if e.seq > seq and flt.wants(e)]
        self._subs.add(sub)
        self.metrics.clients.set(len(self._subs))
        return sub, missed

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subs:
            name = sub.filter.principal.name
            self.per_caller[name] = self.per_caller.get(name, 1) - 1
        self._subs.discard(sub)
        self.metrics.clients.set(len(self._subs))

    def close(self) -> None:
        """Tell every subscriber the stream ends (at shutdown)."""
        for sub in self._subs:
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                sub.overflowed = True
