"""Silences: matchers plus a time window, who and why, for planned events.

A silence mutes notifications of the open alerts it matches while it is
active; the alerts still change state and are still stored. Matchers follow
Alertmanager: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions match the
whole value), on the alert's fields (``rule``, ``severity``, ``city``,
``subject``, ``subject_id``) and labels (``grid``, ``unit``, ``officer``, ...).

Regular expressions are RE2's, as in Alertmanager: matching takes time linear in
the value, whatever the pattern, so no silence can stall the event loop that
evaluates it for every alert change. RE2 refuses what it cannot run in linear
time (backreferences, look-around), and such a pattern is refused here too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

import re2

log = logging.getLogger(__name__)

OPS = ("=", "!=", "=~", "!~")
MAX_PATTERN = 256
MAX_MATCHERS = 16


class SilenceError(ValueError):
    """A silence that cannot be accepted; the message says which part and why."""


def _re2_options() -> re2.Options:
    options = re2.Options()
    # A refused pattern is the caller's error, answered with a SilenceError; RE2 would
    # also write it to stderr.
    options.log_errors = False
    # Only whether the whole value matches counts, never what a group caught.
    options.never_capture = True
    return options


_RE2_OPTIONS = _re2_options()


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value``: one condition on an alert's field or label."""

    name: str
    value: str
    op: str = "="
    # The compiled pattern of ``=~`` and ``!~``: compiled once here, not per match.
    _pattern: Any = field(default=None, init=False, repr=False, compare=False)
    stored: InitVar[bool] = False
    """Read back from the store: a pattern RE2 refuses is then kept, matching nothing."""

    def __post_init__(self, stored: bool) -> None:
        if self.op not in OPS:
            raise SilenceError(f"matcher {self.name!r}: op must be one of {', '.join(OPS)}")
        if not self.name or len(self.name) > 64:
            raise SilenceError("matcher: name must be 1 to 64 characters")
        if len(self.value) > MAX_PATTERN:
            raise SilenceError(f"matcher {self.name!r}: value longer than {MAX_PATTERN}")
        if self.op in ("=~", "!~"):
            # RE2, never Python's backtracking re: a user's pattern must not be able to
            # stall the loop that matches it against every alert.
            try:
                pattern = re2.compile(self.value, _RE2_OPTIONS)
            except re2.error as exc:
                why = exc.args[0] if exc.args else ""
                if isinstance(why, bytes):
                    why = why.decode("utf-8", "replace")
                if stored:
                    # Accepted before patterns were RE2's (a look-ahead, a backreference):
                    # the silence is kept and shown, but mutes nothing, rather than the
                    # service not starting or the silence vanishing unseen.
                    log.warning(
                        "silence matcher %s %s %r is not RE2 (%s): it matches nothing",
                        self.name,
                        self.op,
                        self.value,
                        why,
                    )
                    return
                raise SilenceError(
                    f"matcher {self.name!r}: bad regular expression (RE2 syntax): {why}"
                ) from None
            except UnicodeEncodeError:
                raise SilenceError(f"matcher {self.name!r}: value is not valid text") from None
            object.__setattr__(self, "_pattern", pattern)

    def matches(self, fields: Mapping[str, str]) -> bool:
        value = fields.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        if self._pattern is None:
            return False  # a stored pattern RE2 refuses (see ``stored``)
        # Anchored at both ends, as Alertmanager anchors its matchers.
        try:
            hit = self._pattern.fullmatch(value) is not None
        except UnicodeEncodeError:
            # RE2 matches UTF-8; a lone surrogate has none, so it is matched as raw bytes.
            hit = self._pattern.fullmatch(value.encode("utf-8", "surrogatepass")) is not None
        return hit if self.op == "=~" else not hit

    def to_json(self) -> dict[str, str]:
        """``name``, ``value`` and ``op``, as the API shows and the store keeps them."""
        return {"name": self.name, "value": self.value, "op": self.op}


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts every matcher fits, from ``starts_at`` until ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def __post_init__(self) -> None:
        if not self.matchers:
            raise SilenceError("a silence needs at least one matcher")
        if len(self.matchers) > MAX_MATCHERS:
            raise SilenceError(f"at most {MAX_MATCHERS} matchers")
        if not self.ends_at > self.starts_at:
            raise SilenceError("ends_at must be after starts_at")
        if not self.created_by.strip():
            raise SilenceError("created_by must say who silences")
        if not self.comment.strip():
            raise SilenceError("comment must say why")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(m.matches(fields) for m in self.matchers)

    def to_json(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that would copy each matcher's compiled
        # pattern too.
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["matchers"] = [m.to_json() for m in self.matchers]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(doc["id"]),
            matchers=tuple(Matcher(**m, stored=True) for m in doc["matchers"]),
            starts_at=float(doc["starts_at"]),
            ends_at=float(doc["ends_at"]),
            created_by=str(doc["created_by"]),
            comment=str(doc["comment"]),
            created_at=float(doc["created_at"]),
        )


def silenced_by(
    silences: Mapping[str, Silence], fields: Mapping[str, str], now: float
) -> str | None:
    """The id of an active silence matching ``fields``, or None."""
    for s in silences.values():
        if s.active(now) and s.matches(fields):
            return s.id
    return None
