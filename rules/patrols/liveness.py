"""``device_offline`` and ``patrol_gps_lost``, judged on receive time.

Offline: neither heartbeat nor fix for ``offline.after``, or the handheld's
retained ``offline`` status. GPS lost: the handheld is alive, but no usable fix
(within ``idle.max_acc``) has come for ``gps_lost.after``.
"""

from __future__ import annotations

from rules.patrols.config import Thresholds
from rules.patrols.state import Patrol


def _last_seen(p: Patrol) -> float | None:
    return p.last_seen if p.last_seen is not None else p.watched_since


def offline_since(p: Patrol, th: Thresholds, now: float) -> float | None:
    seen = _last_seen(p)
    if not p.active or seen is None:
        return None
    if p.offline or now - seen >= th.offline.after:
        return seen
    return None


def gps_lost_since(p: Patrol, th: Thresholds, now: float) -> float | None:
    if not p.active or offline_since(p, th, now) is not None:
        return None
    last = p.last_good_fix if p.last_good_fix is not None else p.watched_since
    if last is None:
        return None
    return last if now - last >= th.gps_lost.after else None


def next_instant(p: Patrol, th: Thresholds) -> float | None:
    """When a liveness condition will start to hold if nothing more arrives."""
    if not p.active:
        return None
    times = []
    seen = _last_seen(p)
    if seen is not None and "device_offline" not in p.firing:
        times.append(seen + th.offline.after)
    last = p.last_good_fix if p.last_good_fix is not None else p.watched_since
    if last is not None and "patrol_gps_lost" not in p.firing:
        times.append(last + th.gps_lost.after)
    return min(times) if times else None
