"""The ``cases:`` section: time limits per step, the yellow-light share, the calendar."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from citywatch.config import ConfigError, duration, parse_duration

STAGES = ("filing", "dispatch", "acceptance", "disposal", "verification", "closing")
CALENDARS = ("working", "natural")


@dataclass(frozen=True)
class StageLimit:
    """One step's limit: a duration, or ``{default, urgent, categories, calendar}``."""

    default: float = duration(3600.0)
    urgent: float | None = None
    categories: dict[str, float] = field(default_factory=dict)
    calendar: str | None = None

    @classmethod
    def coerce_raw(cls, value: Any, key: str) -> Any:
        if isinstance(value, Mapping):
            out = dict(value)
            for name in ("default", "urgent"):
                if out.get(name) is not None:
                    out[name] = parse_duration(out[name], f"{key}.{name}")
            cats = out.get("categories")
            if isinstance(cats, Mapping):
                out["categories"] = {
                    str(k): parse_duration(v, f"{key}.categories.{k}") for k, v in cats.items()
                }
            return out
        return {"default": parse_duration(value, key)}

    def validate(self, prefix: str) -> None:
        if self.default <= 0:
            raise ConfigError(f"{prefix}.default", "must be positive")
        if self.urgent is not None and self.urgent <= 0:
            raise ConfigError(f"{prefix}.urgent", "must be positive")
        for k, v in self.categories.items():
            if v <= 0:
                raise ConfigError(f"{prefix}.categories.{k}", "must be positive")
        if self.calendar is not None and self.calendar not in CALENDARS:
            raise ConfigError(f"{prefix}.calendar", f"must be one of {', '.join(CALENDARS)}")

    def limit_for(self, category: str | None, urgent: bool) -> float:
        """The limit of a case: urgent first, then its category, then the default."""
        if urgent and self.urgent is not None:
            return self.urgent
        if category is not None and category in self.categories:
            return self.categories[category]
        return self.default


@dataclass(frozen=True)
class Limits:
    """``cases.limits``: one entry per step with a clock."""

    filing: StageLimit = field(default_factory=lambda: StageLimit(default=1800.0))
    dispatch: StageLimit = field(default_factory=lambda: StageLimit(default=1800.0))
    acceptance: StageLimit = field(default_factory=lambda: StageLimit(default=3600.0))
    disposal: StageLimit = field(
        default_factory=lambda: StageLimit(default=8 * 3600.0, urgent=3600.0)
    )
    verification: StageLimit = field(default_factory=lambda: StageLimit(default=3600.0))
    closing: StageLimit = field(default_factory=lambda: StageLimit(default=1800.0))

    def stage(self, name: str) -> StageLimit:
        limit: StageLimit = getattr(self, name)
        return limit


@dataclass(frozen=True)
class CasesConfig:
    """``cases:`` — electronic supervision of the seven steps."""

    warn_at: float = 0.8
    calendar: str = "working"
    limits: Limits = field(default_factory=Limits)
    kpi_interval: float = duration(60.0)
    """How often this month's case KPIs are recomputed (Prometheus and ``case_kpi``)."""

    def validate(self, prefix: str) -> None:
        if not 0 < self.warn_at < 1:
            raise ConfigError(f"{prefix}.warn_at", "must be between 0 and 1 (a share of the limit)")
        if self.kpi_interval <= 0:
            raise ConfigError(f"{prefix}.kpi_interval", "must be positive")
        if self.calendar not in CALENDARS:
            raise ConfigError(f"{prefix}.calendar", f"must be one of {', '.join(CALENDARS)}")

    def calendar_of(self, stage: str) -> str:
        """The calendar a step counts on: its own override, else the default."""
        return self.limits.stage(stage).calendar or self.calendar
