"""What the writer knows of InfluxDB: its last answer, and an outage under way.

Every write and every ``/ping`` reports here. An outage is logged once when it starts
and once when it ends, with the failed writes and the points spooled meanwhile; the
``back`` event wakes the spool's replay as soon as InfluxDB answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from citywatch.condition import Condition
from citywatch.influx.client import WriteError

log = logging.getLogger(__name__)

STALE_AFTER = 15.0
"""An answer older than this no longer counts (the writer pings every 5 s when idle)."""


class InfluxHealth:
    """InfluxDB's state as the writer last saw it."""

    def __init__(self, behind: Callable[[], bool], spooled: Callable[[], int]) -> None:
        self._behind = behind
        self._spooled = spooled
        self.ok: bool | None = None
        """Whether its last answer (a write or a /ping) was good; None before any."""
        self.answered_at = -float("inf")
        """time.monotonic() of its last good answer."""
        self.unreachable = False
        """The last failure got no answer at all: a /ping then says when it is back."""
        self.last_error: str | None = None
        self.back = asyncio.Event()
        """Set when InfluxDB answers (a /ping or a write) after a failed write."""
        self.outage = Condition(time.monotonic)

    def failed(self, exc: WriteError, *, write: bool) -> None:
        """A write (or a /ping) failed for want of InfluxDB, not for its points."""
        self.ok = False
        self.unreachable = exc.status is None
        self.last_error = str(exc)
        self.back.clear()
        if self.outage.begin(str(exc), events=1 if write else 0):
            log.warning(
                "cannot write to InfluxDB (%s): batches wait in the spool until it takes them",
                exc,
            )
        else:
            log.debug("InfluxDB still unavailable: %s", exc)

    def answered(self, *, write: bool) -> None:
        """A write went through (or InfluxDB refused its points), or a /ping did."""
        if not write and self.outage.active and not self.unreachable:
            # /ping says InfluxDB is up, not that it takes writes (a missing database, a
            # token it refuses): only a write ends this outage.
            return
        self.answered_at = time.monotonic()
        self.back.set()
        if not write and self.outage.active and self._behind():
            # The replay, woken above, says whether writes go through.
            return
        self.ok = True
        self.last_error = None
        ended = self.outage.end()
        if ended is not None:
            log.warning(
                "InfluxDB takes writes again after %.1f s (%d failed writes, %d points "
                "spooled meanwhile); %d batches to replay",
                ended.seconds,
                ended.events,
                ended.points,
                self._spooled(),
            )

    def spooled(self, points: int) -> None:
        """Points went to the spool: counted in the outage, if one is under way."""
        if self.outage.active:
            self.outage.points += points

    def wanted(self, interval: float) -> bool:
        """Whether to ping now: no good answer yet, or none for ``interval`` seconds."""
        return self.ok is not True or time.monotonic() - self.answered_at >= interval

    def problem(self) -> str | None:
        """Why a write to InfluxDB would not go through now, or None."""
        if self.ok is None:
            return "InfluxDB has not answered yet"
        if not self.ok:
            return f"InfluxDB unavailable ({self.last_error})"
        age = time.monotonic() - self.answered_at
        if age > STALE_AFTER:
            return f"InfluxDB has not answered for {age:.0f} s"
        return None
