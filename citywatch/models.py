"""The normalised records that collectors produce and every sink consumes.

Records are named tuples: immutable, typed, and cheap to make at tens of
thousands a second. Times are Unix epoch seconds (float); coordinates are
WGS-84 degrees. A record
carries ``received_at`` (when citywatch got it) beside ``ts`` (when the
handheld or case system says it happened): liveness is judged on the former,
movement and case clocks on the latter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, NamedTuple

CASE_EVENTS: Final = frozenset(
    {
        "reported",
        "filed",
        "dispatched",
        "accepted",
        "resolved",
        "verified",
        "closed",
        "evaluated",
        "returned",
        "suspended",
        "resumed",
        "extended",
        "cancelled",
    }
)
SHIFT_ACTIONS: Final = frozenset({"start", "end", "break_start", "break_end"})
ROLES: Final = frozenset({"inspector", "enforcer"})
CRS_NAMES: Final = frozenset({"wgs84", "gcj02", "bd09"})

Source = Literal["handheld", "owntracks"]


class Fix(NamedTuple):
    """One GPS fix from a handheld, converted to WGS-84."""

    city: str
    device: str
    ts: float
    lat: float
    lon: float
    received_at: float
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None
    alt: float | None = None
    battery: float | None = None
    seq: int | None = None
    source: Source = "handheld"


class Heartbeat(NamedTuple):
    """A handheld's periodic sign of life; not a position."""

    city: str
    device: str
    ts: float
    received_at: float
    battery: float | None = None
    charging: bool | None = None
    signal: float | None = None
    app: str | None = None
    gps: bool | None = None


class DeviceStatus(NamedTuple):
    """The handheld's connection status (its retained MQTT will)."""

    city: str
    device: str
    online: bool
    ts: float
    received_at: float
    retained: bool = False


class ShiftEvent(NamedTuple):
    """An officer starting or ending a shift or a break."""

    city: str
    officer: str
    ts: float
    action: str
    received_at: float
    device: str | None = None
    grids: tuple[str, ...] = ()
    lead: str | None = None
    role: str | None = None


class CaseEvent(NamedTuple):
    """One step in a case's life, from the city's case-handling system."""

    city: str
    case: str
    ts: float
    event: str
    received_at: float
    category: str | None = None
    urgent: bool = False
    grid: str | None = None
    unit: str | None = None
    lat: float | None = None
    lon: float | None = None
    officer: str | None = None
    extend: float | None = None


class Rejected(NamedTuple):
    """A message (or one fix of a batch) that failed validation; kept for the record."""

    kind: str
    reason: str
    detail: str
    topic: str
    received_at: float
    city: str | None = None
    element: int | None = None
    """Position in a GPS array, when one fix of it was rejected."""
    ref: int = 0
    """The broker's message id, telling apart rejections received together."""
    total: int = 1
    """How many elements of one GPS array were refused for this reason (this is the first)."""


class AlertEvent(NamedTuple):
    """A rule's condition started (``firing``) or ended (``resolved``) for one subject.

    This is the interface between rules and alerting. ``at`` is the instant the
    condition changed; ``labels`` say where (step, grid, unit, officer, ...),
    ``values`` how much (deadline, elapsed, overdue_by, ...).
    """

    rule: str
    status: str
    severity: str
    city: str
    subject_kind: str
    subject: str
    at: float
    labels: Mapping[str, str] = {}
    values: Mapping[str, float] = {}
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        """Rule and subject (and a case's step): the identity of the alert it belongs to."""
        step = self.labels.get("step")
        base = f"{self.rule}:{self.city}:{self.subject_kind}:{self.subject}"
        return f"{base}:{step}" if step else base


class AlertChange(NamedTuple):
    """An alert's lifecycle changed: the alert history alerting writes to InfluxDB.

    ``change`` is ``opened``, ``reopened``, ``updated``, ``notified``,
    ``escalated``, ``reminded``, ``acknowledged``, ``resolved``; ``receivers``
    lists whom the change was told to (comma-separated), ``by`` and ``note``
    who acknowledged and why.
    """

    alert_id: int
    fingerprint: str
    rule: str
    severity: str
    status: str
    change: str
    city: str
    subject_kind: str
    subject: str
    at: float
    step: int = 0
    grid: str | None = None
    unit: str | None = None
    officer: str | None = None
    receivers: str = ""
    by: str | None = None
    note: str | None = None


class AlertAck(NamedTuple):
    """A receiver acknowledging an alert from their handheld (``acks/{receiver}``).

    ``alert_id`` is the ``alert_id`` of the push being acknowledged; ``receiver``
    comes from the topic (the broker binds it to the handheld's login).
    """

    city: str
    receiver: str
    alert_id: int
    ts: float
    received_at: float
    note: str | None = None


class CaseKpi(NamedTuple):
    """The case KPIs (CJ/T 292 绩效评价) of a city or one responsible unit for one period.

    ``unit`` is ``_all`` for the city as a whole; ``period`` names the period
    (``2026-11``) that begins at ``start``; the values are those as of ``as_of``.
    ``values`` holds counts as int, rates (0..1) and seconds as float; a rate
    without a denominator is absent.
    """

    city: str
    unit: str
    period: str
    start: float
    as_of: float
    values: Mapping[str, int | float] = {}


class PatrolCoverage(NamedTuple):
    """How much of their assigned cells an officer has walked this shift."""

    city: str
    officer: str
    shift_start: float
    assigned: int
    visited: int
    distance_m: float
    as_of: float


Record = (
    AlertChange
    | AlertAck
    | Fix
    | Heartbeat
    | DeviceStatus
    | ShiftEvent
    | CaseEvent
    | Rejected
    | AlertEvent
    | CaseKpi
    | PatrolCoverage
)
