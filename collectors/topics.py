"""Topic routing: which decoder a topic goes to, and the ids it carries."""

from __future__ import annotations

import re
from typing import NamedTuple

from collectors.reject import Reject

_CITY = re.compile(r"[0-9]{6}").fullmatch
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}").fullmatch

_DEVICE_KINDS = {"gps": "gps", "heartbeat": "heartbeat", "status": "status"}


class Route(NamedTuple):
    """Where a topic leads: the decoder ``kind``, the city and the subject id.

    The subject is the device, officer or case id, or for ``ack`` the receiver id.
    """

    kind: str
    city: str
    subject: str


class Router:
    """Maps topics to routes, caching the answer per topic (topics repeat per device)."""

    def __init__(self, root: str = "citywatch", owntracks_root: str = "owntracks") -> None:
        self.root = root
        self.owntracks_root = owntracks_root
        self._cache: dict[str, Route | tuple[str, str] | None] = {}

    def subscriptions(
        self, cities: tuple[str, ...] = (), share_group: str = "", owntracks: bool = True
    ) -> list[str]:
        """Topic filters to subscribe to: every city's, or only ``cities``; shared or not.

        With ``share_group`` the broker hands each message to one member of the group
        (MQTT shared subscriptions), so several processes split the traffic.
        """
        filters = [f"{self.root}/{c}/#" for c in cities] or [f"{self.root}/#"]
        if owntracks:
            filters.append(f"{self.owntracks_root}/+/+")
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
        if parts[0] == self.owntracks_root and len(parts) == 3:
            user, device = parts[1], parts[2]
            return Route("owntracks", "", f"{user}/{device}")
        if parts[0] != self.root or len(parts) < 3:
            raise Reject("unknown_topic", f"topic {topic!r} is not part of the contract")
        city, section = parts[1], parts[2]
        if section in ("deadletter", "alerts"):
            return None
        if not _CITY(city):
            raise Reject("bad_id", f"city {city!r} in topic must be a 6-digit division code")
        if len(parts) == 4 and section == "acks":
            receiver = parts[3]
            if not _ID(receiver):
                raise Reject(
                    "bad_id", f"receiver {receiver!r} in topic must match [A-Za-z0-9_.-]{{1,64}}"
                )
            return Route("ack", city, receiver)
        if len(parts) == 5:
            subject, leaf = parts[3], parts[4]
            kind = None
            if section == "devices":
                kind = _DEVICE_KINDS.get(leaf)
            elif section == "officers" and leaf == "shift":
                kind = "shift"
            elif section == "cases" and leaf == "events":
                kind = "case"
            if kind is not None:
                if not _ID(subject):
                    raise Reject(
                        "bad_id", f"id {subject!r} in topic must match [A-Za-z0-9_.-]{{1,64}}"
                    )
                return Route(kind, city, subject)
        raise Reject("unknown_topic", f"topic {topic!r} is not part of the contract")
