"""The one contract every notifier meets, what it is handed, and how a kind is declared.

A notifier delivers a batch of :class:`Notification` for one receiver over one
channel, or raises :class:`NotifyError` saying whether trying again may help.
Retries, backoff, deduplication and the outbox live in one stage
(:mod:`alerting.outbox`), never in a notifier. Each kind of notifier is one
module (its settings dataclass beside its notifier class) declared by one
:class:`NotifierKind` line in the table, :mod:`alerting.notifiers.registry`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp


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


class Placement(enum.Enum):
    """Where a kind is configured, and so how many notifiers of it there are and their channels."""

    PUSH = "push"
    """The handhelds' push: one connection the service opens from its ``mqtt:`` settings and
    hands to alerting; ``alerting.receivers.NAME.<kind>`` (a boolean, on by default) says
    whether a receiver is told over it. Its channel is the kind's name."""

    SERVICE = "service"
    """``alerting.<kind>``: one notifier for the whole service, told of every alert opened and
    resolved; the kind's name is both its receiver and its channel."""

    WEBHOOK = "webhook"
    """An entry ``{kind: <kind>, url: ...}`` of ``alerting.receivers.NAME.webhooks``: one
    notifier per receiver and entry, on channel ``webhook:<kind>:<hash of the URL>``."""


@dataclass(frozen=True, slots=True)
class NotifierKind:
    """One kind of notifier: its name, where it is configured, its class and its settings.

    The name is what the configuration (a webhook's ``kind``), the channel names and the
    metrics' ``channel`` label say. ``notifier`` is the class, defined in one module with
    ``config``, the frozen settings dataclass it is built from; a ``SERVICE`` or ``WEBHOOK``
    kind is built as ``notifier(config_instance, session)``. A ``PUSH`` kind has no
    settings of its own (the service builds it from ``mqtt:``), so ``config`` is None.
    """

    name: str
    placement: Placement
    notifier: Callable[..., Notifier]
    config: type[Any] | None

    def make(self, settings: Any, session: aiohttp.ClientSession) -> Notifier:
        """A notifier of this kind for ``settings`` (an instance of :attr:`config`)."""
        return self.notifier(settings, session)
