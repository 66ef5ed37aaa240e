"""Read-only views of the case rule's state, for the API: open cases with their clocks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from citywatch.rules.cases.machine import Replayer
from citywatch.rules.cases.state import CaseState


def open_case_views(
    states: Iterable[CaseState], rp: Replayer, now: float
) -> Iterator[dict[str, Any]]:
    """One entry per open case: its running step(s), deadline, time left, light.

    ``remaining`` is counted time (on the step's calendar) left before the limit,
    negative once overdue; ``deadline`` is the wall-clock instant of the limit
    (None while a suspended clock stands still).
    """
    for s in states:
        if not s.open:
            continue
        steps: list[dict[str, Any]] = []
        for stage, c in s.derived.clocks.items():
            if not c.active:
                continue
            cal = rp.cal(stage)
            used = c.used_at(cal, now)
            deadline = c.overdue_at if c.overdue_at is not None else c.instant_of(cal, c.limit)
            steps.append(
                {
                    "step": stage,
                    "started": c.started,
                    "limit": c.limit,
                    "used": used,
                    "remaining": c.limit - used,
                    "deadline": deadline,
                    "running": c.running,
                    "light": s.lights.get(stage),
                }
            )
        worst = max(steps, key=_urgency, default=None)
        info = s.info
        yield {
            "city": s.city,
            "case": s.case,
            "status": s.derived.status,
            "suspended": s.derived.suspended,
            "category": info.category,
            "urgent": info.urgent,
            "grid": info.grid,
            "unit": info.unit,
            "officer": info.officer,
            "lat": info.lat,
            "lon": info.lon,
            "light": worst["light"] if worst else None,
            "step": worst["step"] if worst else None,
            "deadline": worst["deadline"] if worst else None,
            "remaining": worst["remaining"] if worst else None,
            "steps": steps,
        }


_RANK = {None: 0, "yellow": 1, "red": 2}


def _urgency(step: dict[str, Any]) -> tuple[int, float]:
    return _RANK.get(step["light"], 0), -float(step["remaining"])
