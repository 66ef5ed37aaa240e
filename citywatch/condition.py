"""A condition that is logged when it starts and when it ends, never once per failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Ended:
    """How long a condition lasted and what happened meanwhile."""

    seconds: float
    events: int
    points: int


class Condition:
    """E.g. "InfluxDB unavailable": counts occurrences while it lasts.

    The caller logs one line when :meth:`begin` returns True and one line with the
    :class:`Ended` counts that :meth:`end` returns.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.since: float | None = None
        self.detail = ""
        self.events = 0
        self.points = 0

    @property
    def active(self) -> bool:
        """Whether the condition holds."""
        return self.since is not None

    def begin(self, detail: str, *, events: int = 1, points: int = 0) -> bool:
        """Note an occurrence; True when it starts the condition."""
        self.detail = detail
        if self.since is None:
            self.since = self._now()
            self.events, self.points = events, points
            return True
        self.events += events
        self.points += points
        return False

    def end(self) -> Ended | None:
        """End the condition; its counts, or None when it did not hold."""
        if self.since is None:
            return None
        ended = Ended(self._now() - self.since, self.events, self.points)
        self.since = None
        self.detail = ""
        self.events = self.points = 0
        return ended
