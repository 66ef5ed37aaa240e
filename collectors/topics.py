"""Topic routing: which kind a topic is, the ids it carries, and what is refused.

The router walks the kinds table (:data:`collectors.registry.KINDS`): a topic is the
kind whose pattern it fits. Citywatch topics are ``{root}/{city}/{section}/...``: a
section of one of the service's own output kinds (``deadletter``, ``alerts``) is
skipped whatever follows; otherwise the city is checked first, then the pattern,
then the ids in it. OwnTracks topics carry the app's own names, which
``ingest.owntracks.devices`` maps, so their levels are not checked as ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import NamedTuple

from citywatch.collectors.message import Route
from citywatch.collectors.registry import KINDS, Kind
from citywatch.collectors.reject import Reject
from citywatch.topics import DEFAULT_OWNTRACKS_ROOT, DEFAULT_ROOT, RootKey, root_filter

__all__ = ["Route", "Router"]

_CITY = re.compile(r"[0-9]{6}").fullmatch
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}").fullmatch

# A bad id's dead-letter detail names it "id", except the receiver (details are published).
_NAMED_IDS = frozenset({"receiver"})


class _Shape(NamedTuple):
    """A kind's pattern, ready for matching against a split topic (index 0 is the root)."""

    kind: str
    literals: tuple[str, ...]
    pick: Callable[[list[str]], tuple[str, ...]]
    """The levels of a topic where the pattern has its literals."""
    ids: tuple[tuple[int, str], ...]
    city: int | None
    checked: bool


def _picker(positions: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    # itemgetter is the fastest pick, but gives a bare item for one position.
    if len(positions) == 1:
        (i,) = positions
        return lambda parts: (parts[i],)
    return itemgetter(*positions) if positions else (lambda parts: ())


def _shape(kind: Kind) -> _Shape:
    positions, literals, ids, city = [], [], [], None
    for i, level in enumerate(kind.topic.levels, start=1):
        if not level.startswith("{"):
            positions.append(i)
            literals.append(level)
        elif level == "{city}":
            city = i
        else:
            ids.append((i, level[1:-1]))
    checked = kind.topic.root_key == "root"
    return _Shape(kind.name, tuple(literals), _picker(positions), tuple(ids), city, checked)


def _section(kind: Kind) -> str:
    """The level after the city, which every citywatch topic has and names literally."""
    levels = kind.topic.levels
    if levels[0] != "{city}" or len(levels) < 2 or levels[1].startswith("{"):
        raise ValueError(f"kind {kind.name}: topic must be {{root}}/{{city}}/<section>/...")
    return levels[1]


class Router:
    """Maps topics to routes, caching the answer per topic (topics repeat per device)."""

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        owntracks_root: str = DEFAULT_OWNTRACKS_ROOT,
        kinds: Iterable[Kind] = KINDS,
    ) -> None:
        self.root = root
        self.owntracks_root = owntracks_root
        self.kinds = tuple(kinds)
        self._shapes: dict[tuple[RootKey, int], list[_Shape]] = {}
        own: set[str] = set()
        read: set[str] = set()
        for kind in self.kinds:
            topic = kind.topic
            if topic.root_key == "root":
                (read if kind.inbound else own).add(_section(kind))
            if kind.inbound:
                key = (topic.root_key, len(topic.levels) + 1)
                self._shapes.setdefault(key, []).append(_shape(kind))
        if own & read:
            # Own output is skipped by section, so no message kind may share one.
            raise ValueError(f"sections both read and published: {sorted(own & read)}")
        self._own = frozenset(own)
        self._cache: dict[str, Route | tuple[str, str] | None] = {}

    def subscriptions(
        self, cities: tuple[str, ...] = (), share_group: str = "", owntracks: bool = True
    ) -> list[str]:
        """Topic filters to subscribe to: every city's, or only ``cities``; shared or not.

        With ``share_group`` the broker hands each message to one member of the group
        (MQTT shared subscriptions), so several processes split the traffic.
        """
        filters = [root_filter(self.root, c) for c in cities] or [root_filter(self.root)]
        if owntracks:
            for kind in self.kinds:
                if kind.inbound and kind.topic.root_key == "owntracks_root":
                    f = kind.topic.filter(self.owntracks_root)
                    if f not in filters:
                        filters.append(f)
        return [f"$share/{share_group}/{f}" for f in filters] if share_group else filters

    def route(self, topic: str) -> Route | None:
        """The route of ``topic``; ``None`` for the service's own output topics.

        Raises :class:`Reject` for topics that are not part of the contract.
        """
        if topic in self._cache:
            hit = self._cache[topic]
        else:
            try:
                hit = self._route(topic)
            except Reject as exc:
                hit = (exc.reason, exc.detail)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[topic] = hit
        if isinstance(hit, tuple) and not isinstance(hit, Route):
            # A fresh exception each time: re-raising a cached one would grow its traceback.
            raise Reject(*hit)
        return hit

    def city_of(self, topic: str) -> str | None:
        """The valid city code in ``topic``, if any; names the dead-letter topic."""
        parts = topic.split("/")
        if len(parts) > 1 and parts[0] == self.root and _CITY(parts[1]):
            return parts[1]
        return None

    def _route(self, topic: str) -> Route | None:
        parts = topic.split("/")
        if parts[0] == self.owntracks_root:
            route = self._match("owntracks_root", parts)
            if route is not None:
                return route
        if parts[0] != self.root or len(parts) < 3:
            raise Reject("unknown_topic", f"topic {topic!r} is not part of the contract")
        city, section = parts[1], parts[2]
        if section in self._own:
            return None
        if not _CITY(city):
            raise Reject("bad_id", f"city {city!r} in topic must be a 6-digit division code")
        route = self._match("root", parts)
        if route is None:
            raise Reject("unknown_topic", f"topic {topic!r} is not part of the contract")
        return route

    def _match(self, root_key: RootKey, parts: list[str]) -> Route | None:
        for shape in self._shapes.get((root_key, len(parts)), ()):
            if shape.pick(parts) == shape.literals:
                if shape.checked:
                    for i, name in shape.ids:
                        if not _ID(parts[i]):
                            word = name if name in _NAMED_IDS else "id"
                            raise Reject(
                                "bad_id",
                                f"{word} {parts[i]!r} in topic must match [A-Za-z0-9_.-]{{1,64}}",
                            )
                city = "" if shape.city is None else parts[shape.city]
                ids = shape.ids
                subject = parts[ids[0][0]] if len(ids) == 1 else "/".join(parts[i] for i, _ in ids)
                return Route(shape.kind, city, subject)
        return None
