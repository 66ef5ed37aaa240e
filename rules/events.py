"""What rules emit: alert events to alerting, and the observations they refuse.

A rule says a condition started (``firing``) or ended (``resolved``) for a
subject (a case, an officer, a device). The alerting layer (:mod:`alerting`)
turns these into alerts with a lifecycle; beside it, :mod:`rules.alert_log`
logs, counts and stores every event (measurement ``alert_event``). A record a
rule cannot apply goes to a :class:`RejectSink`: the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from citywatch.models import AlertEvent

__all__ = ["AlertEvent", "AlertFanOut", "AlertSink"]


class AlertSink(Protocol):
    """Where rules send alert events (the alerting layer, or a stand-in)."""

    async def emit(self, events: Sequence[AlertEvent]) -> None: ...


class AlertFanOut:
    """Hands each batch of alert events to several alert sinks, in order."""

    def __init__(self, *sinks: AlertSink) -> None:
        self.sinks = sinks

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        for sink in self.sinks:
            await sink.emit(events)
