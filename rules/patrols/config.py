"""The ``patrols:`` section: thresholds of the patrol rules, overridable per city, grid or role."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from citywatch.config import ConfigError, distance, duration, load_section

ROLES = ("inspector", "enforcer")


@dataclass(frozen=True)
class IdleConfig:
    """``idle``: stayed within ``radius`` for ``window``, judged on fixes within ``max_acc``."""

    window: float = duration(600.0)
    radius: float = distance(50.0)
    max_acc: float = distance(50.0)

    def validate(self, prefix: str) -> None:
        if self.window <= 0:
            raise ConfigError(f"{prefix}.window", "must be positive")
        if self.radius <= 0:
            raise ConfigError(f"{prefix}.radius", "must be positive")


@dataclass(frozen=True)
class OutOfGridConfig:
    """``out_of_grid``: outside every assigned cell plus ``buffer`` for longer than ``after``."""

    after: float = duration(300.0)
    buffer: float = distance(20.0)


@dataclass(frozen=True)
class AfterConfig:
    """A liveness threshold: the condition has held for longer than ``after``."""

    after: float = duration(300.0)

    def validate(self, prefix: str) -> None:
        if self.after <= 0:
            raise ConfigError(f"{prefix}.after", "must be positive")


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of every patrol rule for one officer: a section per rule (its spec's
    ``threshold``, :mod:`rules.patrols.specs`)."""

    idle: IdleConfig = field(default_factory=IdleConfig)
    out_of_grid: OutOfGridConfig = field(default_factory=OutOfGridConfig)
    gps_lost: AfterConfig = field(default_factory=AfterConfig)
    offline: AfterConfig = field(default_factory=lambda: AfterConfig(after=180.0))


SECTIONS = tuple(f.name for f in dataclasses.fields(Thresholds))
"""The threshold sections, one per patrol rule."""


@dataclass(frozen=True)
class Override:
    """Thresholds for the officers it matches: a city, a grid-code prefix, a role (all given)."""

    city: str | None = None
    grid: str | None = None
    role: str | None = None
    idle: dict[str, str] = field(default_factory=dict)
    out_of_grid: dict[str, str] = field(default_factory=dict)
    gps_lost: dict[str, str] = field(default_factory=dict)
    offline: dict[str, str] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ConfigError(f"{prefix}.role", f"must be one of {', '.join(ROLES)}")
        if self.grid is not None and not self.grid.isdigit():
            raise ConfigError(f"{prefix}.grid", "must be a prefix of grid codes (digits)")

    def matches(self, city: str, grids: tuple[str, ...], role: str | None) -> bool:
        if self.city is not None and city != self.city:
            return False
        if self.role is not None and role != self.role:
            return False
        grid = self.grid
        return grid is None or any(g.startswith(grid) for g in grids)

    def settings(self) -> dict[str, dict[str, str]]:
        return {name: value for name in SECTIONS if (value := getattr(self, name))}


@dataclass(frozen=True)
class PatrolsConfig(Thresholds):
    """``patrols:`` — the default thresholds, then each matching override in order."""

    overrides: tuple[Override, ...] = ()

    def validate(self, prefix: str) -> None:
        for i, o in enumerate(self.overrides):
            # Build each override once so that a bad value fails at start-up.
            self._merged((o,), f"{prefix}.overrides[{i}]")

    def thresholds(self, city: str, grids: tuple[str, ...], role: str | None) -> Thresholds:
        """The thresholds of an officer in ``city`` assigned ``grids`` with ``role``."""
        matching = tuple(o for o in self.overrides if o.matches(city, grids, role))
        return self._merged(matching, "patrols.overrides") if matching else self._base

    @functools.cached_property
    def _base(self) -> Thresholds:
        return Thresholds(**{name: getattr(self, name) for name in SECTIONS})

    def _merged(self, overrides: tuple[Override, ...], prefix: str) -> Thresholds:
        base = self._base
        if not overrides:
            return base
        raw: dict[str, Any] = {k: dataclasses.asdict(v) for k, v in vars(base).items()}
        for o in overrides:
            for name, values in o.settings().items():
                raw[name].update(values)
        return load_section(Thresholds, raw, prefix)
