"""Silences: matchers plus a time window, who and why, for planned events.

A silence mutes notifications of the open alerts it matches while it is
active; the alerts still change state and are still stored. Matchers follow
Alertmanager: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions match the
whole value), on the alert's fields (``rule``, ``severity``, ``city``,
``subject``, ``subject_id``) and labels (``grid``, ``unit``, ``officer``, ...).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPS = ("=", "!=", "=~", "!~")
_NESTED = re.compile(r"\)[*+{]")
MAX_PATTERN = 256
MAX_MATCHERS = 16


class SilenceError(ValueError):
    """A silence that cannot be accepted; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value``: one condition on an alert's field or label."""

    name: str
    value: str
    op: str = "="

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise SilenceError(f"matcher {self.name!r}: op must be one of {', '.join(OPS)}")
        if not self.name or len(self.name) > 64:
            raise SilenceError("matcher: name must be 1 to 64 characters")
        if len(self.value) > MAX_PATTERN:
            raise SilenceError(f"matcher {self.name!r}: value longer than {MAX_PATTERN}")
        if self.op in ("=~", "!~"):
            if _NESTED.search(self.value):
                # A quantified group can backtrack exponentially (Python's re is not RE2).
                raise SilenceError(
                    f"matcher {self.name!r}: a group followed by *, + or {{}} is not allowed"
                )
            try:
                re.compile(self.value)
            except re.error as exc:
                raise SilenceError(
                    f"matcher {self.name!r}: bad regular expression: {exc}"
                ) from None

    def matches(self, fields: Mapping[str, str]) -> bool:
        value = fields.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = re.fullmatch(self.value, value) is not None
        return hit if self.op == "=~" else not hit


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
        doc = dataclasses.asdict(self)
        doc["matchers"] = [dataclasses.asdict(m) for m in self.matchers]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(doc["id"]),
            matchers=tuple(Matcher(**m) for m in doc["matchers"]),
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
