"""One step's clock: counted time used, limit, suspensions, on the step's calendar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Calendar(Protocol):
    """Counts time: working hours only, or all of it."""

    def add(self, start: float, seconds: float) -> float: ...

    def elapsed(self, start: float, end: float) -> float: ...


@dataclass(slots=True)
class Clock:
    """A step's clock. ``used`` is counted time up to ``run_start`` (or up to the stop)."""

    stage: str
    started: float
    limit: float
    run_start: float | None
    used: float = 0.0
    stopped: float | None = None
    overdue_at: float | None = None

    @property
    def running(self) -> bool:
        return self.stopped is None and self.run_start is not None

    @property
    def active(self) -> bool:
        return self.stopped is None

    def used_at(self, cal: Calendar, t: float) -> float:
        """Counted time used by instant ``t``."""
        if self.run_start is None or self.stopped is not None:
            return self.used
        return self.used + cal.elapsed(self.run_start, max(t, self.run_start))

    def instant_of(self, cal: Calendar, amount: float) -> float | None:
        """When the clock reaches ``amount`` of counted time, if it is running; else None."""
        if not self.running or self.run_start is None:
            return None
        if amount <= self.used:
            return self.run_start
        return cal.add(self.run_start, amount - self.used)

    def pause(self, cal: Calendar, t: float) -> None:
        """Stop counting at ``t`` (a suspension or the end of the step)."""
        if self.run_start is None:
            return
        t = max(t, self.run_start)
        if self.overdue_at is None and self.used < self.limit:
            due = cal.add(self.run_start, self.limit - self.used)
            if due <= t:
                self.overdue_at = due
        self.used += cal.elapsed(self.run_start, t)
        self.run_start = None

    def resume(self, t: float) -> None:
        if self.stopped is None and self.run_start is None:
            self.run_start = t

    def stop(self, cal: Calendar, t: float) -> None:
        if self.stopped is None:
            self.pause(cal, t)
            self.stopped = t

    @property
    def on_time(self) -> bool:
        return self.used <= self.limit
