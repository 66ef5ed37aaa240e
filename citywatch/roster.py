"""Who the officers and handhelds are: the roster, and the ``devices:`` section.

The roster (``devices.roster_file``, YAML or JSON, usually exported from the
dispatch system) lists per city the officers with their patrol lead, their unit
and the handhelds they may carry, and further handhelds of the city (spares,
beacons)::

    cities:
      "321200":
        officers:
          off-0007: {lead: lead-01, unit: team-3, devices: [cgt-0007]}
          lead-01: {lead: duty, devices: [cgt-0100]}
        devices: [cgt-spare-1]

It serves two purposes. The collector takes data only from known handhelds
(the roster's, and those named by a current shift); and a shift start is
believed only when its ``lead`` and ``device`` are the ones the roster gives
the officer, so a handheld cannot name its own patrol lead (the receiver of its
alerts) or claim another officer's device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from citywatch.config import ConfigError, duration, load_section

_CITY = re.compile(r"[0-9]{6}").fullmatch
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}").fullmatch
UNKNOWN_POLICIES = ("accept", "deadletter")
Key = tuple[str, str]
"""(city, id): ids are unique within a city only."""


@dataclass(frozen=True)
class DevicesConfig:
    """``devices:`` — which handhelds are known, what happens to others, when state is dropped."""

    roster_file: str = ""
    """The roster; empty: no roster (shift claims are trusted as sent)."""
    unknown: str = "accept"
    """What to do with data from a handheld that is neither in the roster nor named by a
    current shift: ``accept`` (up to ``max_unknown``) or ``deadletter`` (``unknown_device``)."""
    max_unknown: int | None = 10_000
    """Distinct unknown handhelds accepted per city; beyond, dead-lettered. None: no bound."""
    max_unknown_total: int | None = 50_000
    """The same over all cities together (city codes are chosen by the publisher too)."""
    unknown_deadletters: int = 60
    """``unknown_device`` dead letters published a minute at most; the rest are counted only."""
    evict_after: float = duration(86400.0)
    """A handheld heard of for this long is forgotten (the live board, the unknown count)."""

    def validate(self, prefix: str) -> None:
        if self.unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"{prefix}.unknown", f"must be one of {', '.join(UNKNOWN_POLICIES)}")
        for name in ("max_unknown", "max_unknown_total"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{prefix}.{name}", "must be at least 1, or null for no bound")
        if self.unknown_deadletters < 0:
            raise ConfigError(f"{prefix}.unknown_deadletters", "must not be negative")
        if self.evict_after < 60:
            raise ConfigError(f"{prefix}.evict_after", "must be at least 1m")


@dataclass(frozen=True)
class RosterOfficer:
    """One officer of the roster."""

    lead: str
    """The officer's patrol lead (组长), who is told of their alerts; ``duty`` for none."""
    unit: str | None = None
    """The officer's unit (中队), as the dispatch system names it; informational."""
    devices: tuple[str, ...] = ()
    """The handhelds the officer may carry on a shift."""

    def validate(self, prefix: str) -> None:
        if not _ID(self.lead):
            raise ConfigError(f"{prefix}.lead", "must match [A-Za-z0-9_.-]{1,64}")
        if self.unit is not None and not _ID(self.unit):
            raise ConfigError(f"{prefix}.unit", "must match [A-Za-z0-9_.-]{1,64}")
        _check_ids(self.devices, f"{prefix}.devices")


@dataclass(frozen=True)
class RosterCity:
    """The officers of one city, and its handhelds that belong to no officer."""

    officers: dict[str, RosterOfficer] = field(default_factory=dict)
    devices: tuple[str, ...] = ()

    def validate(self, prefix: str) -> None:
        for officer in self.officers:
            if not _ID(officer):
                raise ConfigError(f"{prefix}.officers.{officer}", "must match [A-Za-z0-9_.-]{1,64}")
        _check_ids(self.devices, f"{prefix}.devices")


@dataclass(frozen=True)
class RosterFile:
    """The roster file's top level."""

    cities: dict[str, RosterCity] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        for city in self.cities:
            if not _CITY(city):
                raise ConfigError(f"cities.{city}", "must be a 6-digit city code (quote it)")


def _check_ids(ids: tuple[str, ...], key: str) -> None:
    for i, v in enumerate(ids):
        if not _ID(v):
            raise ConfigError(f"{key}[{i}]", f"{v!r} must match [A-Za-z0-9_.-]{{1,64}}")


class Roster:
    """The roster, indexed for the collector: officers by (city, id), and the known handhelds."""

    def __init__(self, cities: Mapping[str, RosterCity]) -> None:
        self.officers: dict[Key, RosterOfficer] = {}
        devices: set[Key] = set()
        for city, c in cities.items():
            for officer, o in c.officers.items():
                self.officers[(city, officer)] = o
                devices.update((city, d) for d in o.devices)
            devices.update((city, d) for d in c.devices)
        self.devices = frozenset(devices)

    def __len__(self) -> int:
        return len(self.officers)

    def officer(self, city: str, officer: str) -> RosterOfficer | None:
        """The officer's entry, or None when the roster does not list them."""
        return self.officers.get((city, officer))

    def has_device(self, key: Key) -> bool:
        """Whether the roster lists the handheld (city, device)."""
        return key in self.devices

    def mismatch(self, city: str, officer: str, lead: str | None, device: str | None) -> str:
        """Why a shift start naming ``lead`` and ``device`` contradicts the roster ("": it
        does not)."""
        o = self.officers.get((city, officer))
        if o is None:
            return f"officer {officer} is not in the roster of city {city}"
        if lead != o.lead:
            return f"lead {lead} is not {officer}'s lead in the roster ({o.lead})"
        if device not in o.devices:
            mine = ", ".join(o.devices) or "none"
            return f"device {device} is not one of {officer}'s devices in the roster ({mine})"
        return ""


def load_roster(path: str) -> Roster | None:
    """The roster in ``path`` (YAML, or JSON), or None when no file is configured.

    Raises :class:`ConfigError` on ``devices.roster_file``, naming the file and the entry.
    """
    if not path:
        return None
    key = "devices.roster_file"
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    raw: Any
    try:
        raw = orjson.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(key, f"{path} is not valid YAML or JSON: {exc}") from None
    try:
        parsed = load_section(RosterFile, raw, "")
    except ConfigError as exc:
        raise ConfigError(key, f"{path}: {exc.key}: {exc.problem}") from None
    return Roster(parsed.cities)
