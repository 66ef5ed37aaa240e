"""The one contract every notifier meets, and what it is handed.

A notifier delivers a batch of :class:`Notification` for one receiver over one
channel, or raises :class:`NotifyError` saying whether trying again may help.
Retries, backoff, deduplication and the outbox live in one stage
(:mod:`alerting.outbox`), never in a notifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert as told to one receiver: the payload of every channel.

    ``id`` is the idempotency key: the same alert state told to the same receiver
    at the same escalation step always has the same ``id``, so a receiver drops
    a repeat delivery. ``status`` is ``firing``, ``acknowledged`` or ``resolved``;
    ``severity`` is ``yellow``, ``red`` or ``critical``. Times are Unix epoch
    seconds; ``ends_at`` is None while the alert is open. ``summary`` is Chinese
    text readable on a phone (what, where, how long).
    """

    id: str
    fingerprint: str
    rule: str
    severity: str
    status: str
    city: str
    subject_kind: str
    subject_id: str
    starts_at: float
    summary: str
    receiver: str
    escalation: int = 0
    ends_at: float | None = None
    grid: str | None = None
    unit: str | None = None
    officer: str | None = None
    device: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    alert_id: int = 0
    sent_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON document pushed over MQTT (docs/protocol.md, "Alert pushes")."""
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "city": self.city,
            "subject": {"kind": self.subject_kind, "id": self.subject_id},
            "grid": self.grid,
            "unit": self.unit,
            "officer": self.officer,
            "device": self.device,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "summary": self.summary,
            "details": dict(self.details),
            "receiver": self.receiver,
            "escalation": self.escalation,
            "sent_at": self.sent_at,
        }


class NotifyError(Exception):
    """A delivery failed; ``retryable`` says whether the same delivery may succeed later.

    Network errors, timeouts and 5xx answers are retryable; 4xx answers and
    refusals by the receiver (a bad token, a malformed payload) are not. The
    message never contains a secret (a token in a URL, a signing key).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    """Delivers notifications over one channel to one configured destination."""

    async def notify(self, alerts: Sequence[Notification]) -> None:
        """Deliver ``alerts`` (one receiver's, oldest first) or raise :class:`NotifyError`."""
        ...
