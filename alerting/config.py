"""The ``alerting:`` section: routes, escalation chains, receivers, reminders, delivery.

With nothing configured a fresh install still notifies someone: patrol alerts
go to the officer's patrol lead (``lead`` from the shift) and every other alert
to the receiver ``duty`` (the command center duty desk), over MQTT.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from citywatch.alerting.notifiers.config import WebhookConfig
from citywatch.alerting.notifiers.grafana import GrafanaConfig
from citywatch.alerting.notifiers.registry import webhook_config_class
from citywatch.config import ConfigError, duration

SEVERITIES = ("yellow", "red", "critical")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DUTY = "duty"
_RECEIVER_RE = re.compile(r"^(\{(lead|unit|officer)\}|[A-Za-z0-9_.:@-]{1,64})$")
_TIME_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def valid_receiver(name: str) -> bool:
    """A concrete receiver name (no placeholder), usable as an MQTT topic level."""
    return bool(_RECEIVER_RE.fullmatch(name)) and not name.startswith("{")


def check_receiver(name: str, key: str) -> None:
    """A receiver is a name usable in an MQTT topic, or a ``{lead}``/``{unit}``/``{officer}``."""
    if not _RECEIVER_RE.fullmatch(name):
        raise ConfigError(
            key,
            f"{name!r} is not a receiver name (letters, digits, _.:@-, at most 64) "
            "or one of {lead}, {unit}, {officer}",
        )


@dataclass(frozen=True)
class ActiveHours:
    """When a route applies: days of the week and a time of day, in ``alerting.timezone``."""

    days: tuple[str, ...] = DAYS
    start: str = "00:00"
    end: str = "24:00"

    def validate(self, prefix: str) -> None:
        for i, d in enumerate(self.days):
            if d not in DAYS:
                raise ConfigError(f"{prefix}.days[{i}]", f"must be one of {', '.join(DAYS)}")
        for name in ("start", "end"):
            value = getattr(self, name)
            m = _TIME_RE.match(value)
            if not m or (m.group(1) == "24" and m.group(2) != "00"):
                raise ConfigError(f"{prefix}.{name}", f"expected HH:MM, got {value!r}")
        if self._minutes(self.start) >= self._minutes(self.end):
            raise ConfigError(f"{prefix}.end", "must be after start (split a night into two)")

    @staticmethod
    def _minutes(hhmm: str) -> int:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)

    def contains(self, instant: float, tz: datetime.tzinfo) -> bool:
        local = datetime.datetime.fromtimestamp(instant, tz)
        if DAYS[local.weekday()] not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        return self._minutes(self.start) <= minute < self._minutes(self.end)


@dataclass(frozen=True)
class EscalationStep:
    """If still unacknowledged ``after`` the alert opened, notify ``receivers`` as well."""

    after: float = duration(600.0)
    receivers: tuple[str, ...] = (DUTY,)
    severity: str = "critical"

    def validate(self, prefix: str) -> None:
        if self.after <= 0:
            raise ConfigError(f"{prefix}.after", "must be positive")
        if not self.receivers:
            raise ConfigError(f"{prefix}.receivers", "must name at least one receiver")
        for i, r in enumerate(self.receivers):
            check_receiver(r, f"{prefix}.receivers[{i}]")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"{prefix}.severity", f"must be one of {', '.join(SEVERITIES)}")


@dataclass(frozen=True)
class Match:
    """Which alerts a route takes; every given field must match, a list matches any item."""

    city: tuple[str, ...] = ()
    grid: tuple[str, ...] = ()
    """Prefixes of grid codes (district, street, community)."""
    unit: tuple[str, ...] = ()
    role: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    """Subject kinds: ``case``, ``officer``."""

    def validate(self, prefix: str) -> None:
        for i, s in enumerate(self.severity):
            if s not in SEVERITIES:
                raise ConfigError(f"{prefix}.severity[{i}]", f"must be one of {SEVERITIES}")

    def matches(self, alert: dict[str, str]) -> bool:
        """``alert`` holds the alert's fields and labels (city, grid, unit, rule, ...)."""
        for name in ("city", "unit", "role", "rule", "severity", "subject"):
            wanted: tuple[str, ...] = getattr(self, name)
            if wanted and alert.get(name) not in wanted:
                return False
        if self.grid:
            grid = alert.get("grid") or ""
            if not any(grid.startswith(p) for p in self.grid):
                return False
        return True


@dataclass(frozen=True)
class Route:
    """Receivers for the alerts it matches, an escalation chain, and when it applies."""

    name: str = ""
    match: Match = field(default_factory=Match)
    receivers: tuple[str, ...] = ("{lead}",)
    escalate: tuple[EscalationStep, ...] = ()
    active: ActiveHours | None = None

    def validate(self, prefix: str) -> None:
        if not self.receivers:
            raise ConfigError(f"{prefix}.receivers", "must name at least one receiver")
        for i, r in enumerate(self.receivers):
            check_receiver(r, f"{prefix}.receivers[{i}]")
        last = 0.0
        for i, step in enumerate(self.escalate):
            if step.after <= last:
                raise ConfigError(
                    f"{prefix}.escalate[{i}].after", "must be later than the step before"
                )
            last = step.after


@dataclass(frozen=True)
class ReceiverConfig:
    """How one receiver (a person or a group) is told: MQTT push, webhooks or both."""

    mqtt: bool = True
    webhooks: tuple[WebhookConfig, ...] = field(
        default=(), metadata={"select": webhook_config_class}
    )
    """Each entry is read into its kind's settings class (the notifier table's)."""


@dataclass(frozen=True)
class DeliveryConfig:
    """The outbox: retries with exponential backoff, batches, and when to give up."""

    backoff_initial: float = duration(1.0)
    backoff_max: float = duration(300.0)
    give_up_after: float = duration(86400.0)
    batch_max: int = 50
    keep_sent: float = duration(7 * 86400.0)
    keep_resolved: float = duration(90 * 86400.0)

    def validate(self, prefix: str) -> None:
        if self.backoff_initial <= 0:
            raise ConfigError(f"{prefix}.backoff_initial", "must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError(f"{prefix}.backoff_max", "must be at least backoff_initial")
        if not 1 <= self.batch_max <= 1000:
            raise ConfigError(f"{prefix}.batch_max", "must be between 1 and 1000")


@dataclass(frozen=True)
class AlertingConfig:
    """``alerting:`` — routing (first matching route wins), receivers and delivery."""

    routes: tuple[Route, ...] = ()
    receivers: dict[str, ReceiverConfig] = field(default_factory=dict)
    reopen_window: float = duration(600.0)
    repeat_interval: float = duration(1800.0)
    repeat_severities: tuple[str, ...] = ("red", "critical")
    timezone: str = "Asia/Shanghai"
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    grafana: GrafanaConfig | None = None

    def validate(self, prefix: str) -> None:
        p = f"{prefix}." if prefix else ""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{p}timezone", f"unknown time zone {self.timezone!r}") from None
        for name in self.receivers:
            check_receiver(name, f"{p}receivers.{name}")
            if name.startswith("{"):
                raise ConfigError(f"{p}receivers.{name}", "placeholders cannot be configured")
        for i, s in enumerate(self.repeat_severities):
            if s not in SEVERITIES:
                raise ConfigError(f"{p}repeat_severities[{i}]", f"must be one of {SEVERITIES}")
        names = [r.name for r in self.routes if r.name]
        if len(names) != len(set(names)):
            raise ConfigError(f"{p}routes", "route names must be unique")

    @property
    def tz(self) -> datetime.tzinfo:
        return ZoneInfo(self.timezone)

    def receiver(self, name: str) -> ReceiverConfig:
        """The channels of ``name``; an unconfigured receiver is pushed over MQTT only."""
        return self.receivers.get(name) or _MQTT_ONLY


_MQTT_ONLY = ReceiverConfig()
