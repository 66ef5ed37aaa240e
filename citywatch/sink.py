"""The sink contract between collectors and everything downstream.

Collectors hand normalised records to a :class:`Sink` (Telegraf's
Accumulator); :meth:`Sink.write` returns once the records are durable, and
only then does the collector acknowledge the messages to the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from citywatch.models import Record, Rejected


class SinkUnavailable(Exception):
    """Storage is unavailable for now (InfluxDB down and the spool full): try again later.

    Any other exception from a sink is a bug in it; retrying cannot help for ever.
    """


class Sink(Protocol):
    """Receives batches of records; returns when they are safely stored.

    Raises :class:`SinkUnavailable` when the records could not be stored yet.
    """

    async def write(self, records: Sequence[Record]) -> None: ...


class RejectSink(Protocol):
    """Where refused observations go: the dead-letter topic and the record.

    Stages past the collector (the case rule's impossible transitions, alerting's
    refused acknowledgements) hand what they refuse to one of these
    (:class:`~citywatch.deadletter.DeadLetters` in the service).
    """

    async def reject(self, rejected: Rejected, payload: bytes) -> None: ...


class FanOut:
    """Feeds every record to each sink; done when all of them are done."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    async def write(self, records: Sequence[Record]) -> None:
        if len(self.sinks) == 1:
            await self.sinks[0].write(records)
            return
        await asyncio.gather(*(s.write(records) for s in self.sinks))
