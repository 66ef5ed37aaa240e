"""The patrol rules' table, and turning their conditions into alert events.

Each rule is a pure function of (patrol, thresholds, now) returning since when
its condition holds, or None. ``evaluate`` compares that with what alerting was
told (``patrol.firing``) and returns the events that bring it in line.
"""

from __future__ import annotations

from collections.abc import Callable

from citywatch.models import AlertEvent
from rules.patrols.config import Thresholds
from rules.patrols.idle import idle_since
from rules.patrols.liveness import gps_lost_since, offline_since
from rules.patrols.out_of_grid import out_of_grid_since
from rules.patrols.state import Patrol

Rule = Callable[[Patrol, Thresholds, float], float | None]

RULES: dict[str, tuple[Rule, str]] = {
    "patrol_idle": (idle_since, "yellow"),
    "patrol_out_of_grid": (out_of_grid_since, "yellow"),
    "patrol_gps_lost": (gps_lost_since, "red"),
    "device_offline": (offline_since, "red"),
}

_SUMMARY = {
    "patrol_idle": "原地停留",
    "patrol_out_of_grid": "离开责任网格",
    "patrol_gps_lost": "GPS信号丢失",
    "device_offline": "终端离线",
}


def evaluate(p: Patrol, th: Thresholds, now: float) -> list[AlertEvent]:
    """Alert events for the conditions that started or ended; updates ``p.firing``."""
    out: list[AlertEvent] = []
    for name, (rule, severity) in RULES.items():
        since = rule(p, th, now)
        was = p.firing.get(name)
        if since is not None and was is None:
            p.firing[name] = since
            out.append(_event(p, name, severity, "firing", since, now, since))
        elif since is None and was is not None:
            del p.firing[name]
            out.append(_event(p, name, severity, "resolved", now, now, was))
    return out


def _event(
    p: Patrol, rule: str, severity: str, status: str, at: float, now: float, since: float
) -> AlertEvent:
    labels = {"officer": p.officer}
    for name in ("device", "lead", "role"):
        value = getattr(p, name)
        if value:
            labels[name] = value
    if p.grids:
        labels["grid"] = p.grids[0]
    values = {"since": since, "held": max(0.0, now - since)}
    if p.position is not None:
        values.update(fix_ts=p.position[0], lon=p.position[1], lat=p.position[2])
    minutes = int(max(0.0, now - since) // 60)
    return AlertEvent(
        rule=rule,
        status=status,
        severity=severity,
        city=p.city,
        subject_kind="officer",
        subject=p.officer,
        at=at,
        labels=labels,
        values=values,
        summary=f"{p.officer} {_SUMMARY[rule]} {minutes} 分钟",
    )
