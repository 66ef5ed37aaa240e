"""What rules emit: alert events, the one interface between rules and alerting.

A rule says a condition started (``firing``) or ended (``resolved``) for a
subject (a case, an officer, a device). The alerting layer turns these into
alerts with a lifecycle; until it runs, :mod:`rules.alert_log` logs, counts and
stores them.
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
