"""What rules emit: alert events, the one interface between rules and alerting.

A rule says a condition started (``firing``) or ended (``resolved``) for a
subject (a case, an officer, a device). The alerting layer turns these into
alerts with a lifecycle; until it runs, a sink logs, counts and stores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A rule's condition changed for one subject at instant ``at``."""

    rule: str
    status: Status
    severity: str
    city: str
    subject_kind: str
    subject: str
    at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, float] = field(default_factory=dict)
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        """Rule and subject (and the case's step): the identity of the alert it belongs to."""
        step = self.labels.get("step")
        base = f"{self.rule}:{self.city}:{self.subject_kind}:{self.subject}"
        return f"{base}:{step}" if step else base


class AlertSink(Protocol):
    """Where rules send alert events (the alerting layer, or a stand-in)."""

    async def emit(self, events: Sequence[AlertEvent]) -> None: ...
