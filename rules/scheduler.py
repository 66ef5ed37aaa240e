"""The rules' timers: :class:`citywatch.scheduler.Timers`, shared with alerting."""

from citywatch.scheduler import Timers

__all__ = ["Timers"]
