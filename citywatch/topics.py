"""The topics of the MQTT contract (docs/protocol.md §2): declared here once, built only here.

Each topic shape is a :class:`TopicPattern`, such as ``{root}/{city}/devices/{device}/gps``.
The collectors' kinds table (``collectors/registry.py``) names one pattern per message kind
and the router parses topics by walking that table; everything that publishes (the
simulator, the rules, alerting, the benchmarks) builds its topics with the functions
below. The first level is never written out in code: ``{root}`` is the setting
``mqtt.topic_root`` and ``{owntracks_root}`` the setting ``mqtt.owntracks_root``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

DEFAULT_ROOT: Final = "citywatch"
"""The default of ``mqtt.topic_root``."""
DEFAULT_OWNTRACKS_ROOT: Final = "owntracks"
"""The default of ``mqtt.owntracks_root``."""

RootKey = Literal["root", "owntracks_root"]
"""The setting a pattern's first level comes from: ``mqtt.topic_root``, ``mqtt.owntracks_root``."""

UNKNOWN_CITY: Final = "unknown"
"""The ``{city}`` of a dead letter for a message whose topic names no valid city."""

_LEVEL = re.compile(r"\{([a-z_]+)\}|[a-z]+")


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """One topic shape: a root, then literal levels and ``{placeholder}`` levels.

    ``template`` is written as in docs/protocol.md with the root as ``{root}`` or
    ``{owntracks_root}``; the other levels are derived from it.
    """

    template: str
    root_key: RootKey = field(init=False)
    levels: tuple[str, ...] = field(init=False)
    """The levels after the root, placeholders still in braces."""
    placeholders: tuple[str, ...] = field(init=False)
    """The placeholders' names, in order."""
    _format: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        first, *levels = self.template.split("/")
        if first not in ("{root}", "{owntracks_root}") or not levels:
            raise ValueError(
                f"topic {self.template!r} must start with {{root}} or {{owntracks_root}}"
            )
        names = []
        for level in levels:
            m = _LEVEL.fullmatch(level)
            if m is None:
                raise ValueError(
                    f"topic {self.template!r}: level {level!r} is not a word or a {{name}}"
                )
            if m.group(1):
                names.append(m.group(1))
        if len(set(names)) != len(names):
            raise ValueError(f"topic {self.template!r} repeats a placeholder")
        fmt = "/".join("{}" if lv.startswith("{") else lv for lv in ("{root}", *levels))
        object.__setattr__(self, "root_key", first[1:-1])
        object.__setattr__(self, "levels", tuple(levels))
        object.__setattr__(self, "placeholders", tuple(names))
        object.__setattr__(self, "_format", fmt)

    def fill(self, root: str, *values: str) -> str:
        """The topic with ``root`` first and ``values`` for the placeholders, in order."""
        if len(values) != len(self.placeholders):
            raise TypeError(f"{self.template} takes {len(self.placeholders)} values")
        return self._format.format(root, *values)

    def filter(self, root: str, **values: str) -> str:
        """A subscription filter: the given placeholders filled in, ``+`` for the others."""
        unknown = set(values) - set(self.placeholders)
        if unknown:
            raise TypeError(f"{self.template} has no placeholder {sorted(unknown)}")
        return self._format.format(root, *(values.get(p, "+") for p in self.placeholders))


# The contract's topics: one line each (docs/protocol.md §2 lists the same).
GPS: Final = TopicPattern("{root}/{city}/devices/{device}/gps")
HEARTBEAT: Final = TopicPattern("{root}/{city}/devices/{device}/heartbeat")
STATUS: Final = TopicPattern("{root}/{city}/devices/{device}/status")
SHIFT: Final = TopicPattern("{root}/{city}/officers/{officer}/shift")
CASE_EVENTS: Final = TopicPattern("{root}/{city}/cases/{case}/events")
ACK: Final = TopicPattern("{root}/{city}/acks/{receiver}")
OWNTRACKS: Final = TopicPattern("{owntracks_root}/{user}/{device}")
DEADLETTER: Final = TopicPattern("{root}/{city}/deadletter")
ALERT: Final = TopicPattern("{root}/{city}/alerts/{receiver}")


def gps_topic(root: str, city: str, device: str) -> str:
    """Where a handheld publishes its GPS fixes."""
    return GPS.fill(root, city, device)


def heartbeat_topic(root: str, city: str, device: str) -> str:
    """Where a handheld publishes its heartbeats."""
    return HEARTBEAT.fill(root, city, device)


def status_topic(root: str, city: str, device: str) -> str:
    """Where a handheld publishes its (retained) connection status and last will."""
    return STATUS.fill(root, city, device)


def shift_topic(root: str, city: str, officer: str) -> str:
    """Where an officer's handheld publishes shift and break starts and ends."""
    return SHIFT.fill(root, city, officer)


def case_events_topic(root: str, city: str, case: str) -> str:
    """Where the case-handling system publishes the steps of one case."""
    return CASE_EVENTS.fill(root, city, case)


def ack_topic(root: str, city: str, receiver: str) -> str:
    """Where a receiver's handheld acknowledges alerts."""
    return ACK.fill(root, city, receiver)


def owntracks_topic(owntracks_root: str, user: str, device: str) -> str:
    """Where the OwnTracks app of ``user`` publishes from ``device``."""
    return OWNTRACKS.fill(owntracks_root, user, device)


def deadletter_topic(root: str, city: str | None) -> str:
    """Where citywatch publishes the dead letters of a city (``unknown`` without one)."""
    return DEADLETTER.fill(root, city or UNKNOWN_CITY)


def alert_topic(root: str, city: str, receiver: str) -> str:
    """Where citywatch pushes a receiver's alerts."""
    return ALERT.fill(root, city, receiver)


def root_filter(root: str, city: str | None = None) -> str:
    """The filter of every citywatch topic, or of every topic of one city."""
    return f"{root}/{city}/#" if city is not None else f"{root}/#"
