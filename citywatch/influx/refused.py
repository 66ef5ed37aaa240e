"""Points InfluxDB refused: counted, and handed to the dead letters (``influx_refused``).

A dead letter carries the refused line and InfluxDB's reason; like every rejection it is
also recorded as an ``ingest_rejected`` point. The sink of dead letters is attached once
the service has a connection to publish them on; refusals before that are kept.
"""

from __future__ import annotations

import logging
import re
import zlib

from citywatch.clock import Clock
from citywatch.influx.delivery import Refusal
from citywatch.influx.metrics import WriterMetrics
from citywatch.models import Rejected
from citywatch.sink import RejectSink

log = logging.getLogger(__name__)

REASON = "influx_refused"
"""The dead-letter reason of a point InfluxDB refused (collectors/reject.py REASONS)."""

HELD_MAX = 10_000
"""Dead letters kept while no sink is attached yet (start-up); more are lost, and logged."""

_CITY = re.compile(r"[0-9]{6}")


class RefusedPoints:
    """Counts refused points by reason and dead-letters them."""

    def __init__(self, metrics: WriterMetrics, clock: Clock, sink: RejectSink | None) -> None:
        self.metrics = metrics
        self.clock = clock
        self.sink = sink
        self.held: list[tuple[Rejected, bytes]] = []
        self._lost = 0
        self._logged: set[str] = set()

    async def attach(self, sink: RejectSink) -> None:
        """Dead-letter through ``sink`` from now on, those refused until now first."""
        self.sink = sink
        held, self.held = self.held, []
        for rejected, payload in held:
            await sink.reject(rejected, payload)

    async def take(self, refusals: list[Refusal]) -> None:
        """Count the refused points and hand their dead letters over."""
        now = self.clock.now()
        for i, r in enumerate(refusals):
            self.metrics.refused.labels(r.cause).inc()
            if r.cause not in self._logged:
                self._logged.add(r.cause)
                log.warning(
                    "InfluxDB refused a point (%s): %s. Refused points are dead-lettered "
                    "(influx_refused) and counted in citywatch_write_refused_points_total"
                    '{reason="%s"}, not logged again',
                    r.cause,
                    r.message,
                    r.cause,
                )
            # A microsecond apart: the records of refusals made together are distinct points.
            rejected = refused_record(r, now + i * 1e-6)
            if rejected is None:
                log.debug("InfluxDB refused the record of a refused point: %s", r.line)
                continue
            payload = r.line.encode()
            if self.sink is not None:
                await self.sink.reject(rejected, payload)
            elif len(self.held) < HELD_MAX:
                self.held.append((rejected, payload))
            else:
                self._lost += 1
                if self._lost == 1:
                    log.error("no dead-letter sink: dead letters of refused points are lost")


def series_of(line: str) -> tuple[str, dict[str, str]]:
    """The measurement and tags of a line of line protocol, unescaped."""
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            cur.append(line[i + 1])
            i += 2
            continue
        if c == " ":
            break
        if c == ",":
            parts.append("".join(cur))
            cur = []
        else:
            # Keep an unescaped "=" visible to the split below; an escaped one is data.
            cur.append("\0" if c == "=" else c)
        i += 1
    parts.append("".join(cur))
    tags: dict[str, str] = {}
    for part in parts[1:]:
        key, _, value = part.partition("\0")
        tags[key.replace("\0", "=")] = value.replace("\0", "=")
    return parts[0].replace("\0", "="), tags


def refused_record(refusal: Refusal, now: float) -> Rejected | None:
    """The dead letter of a refused line, or None for the record of an earlier refusal.

    The record of a refusal is itself written to InfluxDB (``ingest_rejected``); when that
    is refused too, it is counted but not dead-lettered again, which could go on for ever.
    """
    measurement, tags = series_of(refusal.line)
    if measurement == "ingest_rejected" and tags.get("reason") == REASON:
        return None
    return Rejected(
        kind=measurement or "unknown",
        reason=REASON,
        detail=f"{refusal.cause}: {refusal.message}",
        # A point may combine several messages, and records from past the collector have
        # none: the payload (the refused line) says what it was.
        topic="",
        received_at=now,
        # The dead letter's topic names the city: only a valid code (else "unknown").
        city=city if _CITY.fullmatch(city := tags.get("city", "")) else None,
        # Tells the records of distinct lines apart (with received_at, see schema.py).
        ref=zlib.crc32(refusal.line.encode()),
    )
