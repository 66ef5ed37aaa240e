"""What the simulator simulates: :class:`SimConfig`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from citywatch.topics import DEFAULT_ROOT

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Shares are fractions of the devices showing each behaviour."""

    devices: int = 40
    fix_interval: float = 10.0
    heartbeat_interval: float = 60.0
    cases_per_day: float = 250.0
    seed: int = 1
    city: str = "321200"
    topic_root: str = DEFAULT_ROOT
    idle_share: float = 0.1
    leave_grid_share: float = 0.05
    offline_share: float = 0.05
    gps_lost_share: float = 0.05
    gcj02_share: float = 0.2
    bd09_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.devices <= 9999:
            raise ValueError(f"devices must be between 0 and 9999, got {self.devices}")
        if not (self.fix_interval > 0 and self.heartbeat_interval > 0):
            raise ValueError("fix_interval and heartbeat_interval must be positive")
        if not 0 <= self.cases_per_day < math.inf:
            raise ValueError(f"cases_per_day must be finite and >= 0, got {self.cases_per_day}")
        if not _SEGMENT_RE.match(self.city):
            raise ValueError(f"city must be a plain topic segment, got {self.city!r}")
        parts = self.topic_root.split("/")
        if not all(_SEGMENT_RE.match(p) for p in parts):
            raise ValueError(f"topic_root must be plain topic segments, got {self.topic_root!r}")
        for name in ("idle", "leave_grid", "offline", "gps_lost", "gcj02", "bd09"):
            share = getattr(self, f"{name}_share")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name}_share must be between 0 and 1, got {share}")
        if self.gcj02_share + self.bd09_share > 1.0:
            raise ValueError("gcj02_share + bd09_share must not exceed 1")
