"""An alert: the lifecycle of one rule's condition for one subject.

An alert is identified by its fingerprint (rule and subject, and a case's step;
:attr:`citywatch.models.AlertEvent.fingerprint`). States: ``firing`` →
``acknowledged`` → ``resolved``; *silenced* is not a state but a view of an
open alert that a silence matches. ``occurrence`` counts reopenings: a
condition that comes back within ``reopen_window`` of its resolution reopens
the same alert instead of raising a new one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

FIRING = "firing"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
STATES = (FIRING, ACKNOWLEDGED, RESOLVED)
OPEN = frozenset({FIRING, ACKNOWLEDGED})


@dataclass(slots=True)
class Alert:
    """What alerting knows of one alert; saved whole as a JSON document."""

    id: int
    fingerprint: str
    rule: str
    severity: str
    city: str
    subject_kind: str
    subject: str
    starts_at: float
    """When the condition started (the rule's ``at``)."""
    opened_at: float
    """When alerting raised (or reopened, or un-silenced) it: escalation counts from here."""
    status: str = FIRING
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    ends_at: float | None = None
    """When the condition ended (the rule's ``at``)."""
    closed_at: float | None = None
    """When alerting resolved it."""
    updated_at: float = 0.0
    occurrence: int = 1
    step: int = -1
    """The last escalation step told (-1: nobody yet, 0: the route's receivers)."""
    told: list[str] = field(default_factory=list)
    """Every receiver told so far, in order: they hear of the acknowledgement and resolution."""
    last_told_at: float | None = None
    reminders: int = 0
    ack_by: str | None = None
    ack_at: float | None = None
    ack_note: str | None = None
    silenced_since: float | None = None
    """Since when a silence has held it (its escalation clock stands still meanwhile)."""
    route: str = ""
    """The route chosen when the alert opened (its name, or ``#index``; empty: the default)."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def fields(self) -> dict[str, str]:
        """The alert's fields and labels, as routes and silences match them."""
        out = dict(self.labels)
        out.update(
            rule=self.rule,
            severity=self.severity,
            city=self.city,
            subject=self.subject_kind,
            subject_id=self.subject,
            status=self.status,
        )
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, blob: bytes | str) -> Alert:
        doc: dict[str, Any] = orjson.loads(blob)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def copy(self) -> Alert:
        """A copy whose containers are its own (the lifecycle never mutates its input)."""
        new = object.__new__(Alert)
        for name in _FIELDS:
            setattr(new, name, getattr(self, name))
        new.labels, new.values, new.told = dict(self.labels), dict(self.values), list(self.told)
        return new


_FIELDS = tuple(f.name for f in dataclasses.fields(Alert))
