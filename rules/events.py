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

__all__ = ["AlertEvent", "AlertSink"]


class AlertSink(Protocol):
    """Where rules send alert events (the alerting layer, or a stand-in)."""

    async def emit(self, events: Sequence[AlertEvent]) -> None: ...
