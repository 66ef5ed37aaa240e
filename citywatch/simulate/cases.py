"""The life of a city-management case, planned in one go when it is reported.

A case passes 上报 reported, 立案 filed, 派遣 dispatched, 受理 accepted,
处置 resolved, 核查 verified, 结案 closed and 评价 evaluated. The handling
unit has a time limit counted from dispatch (shorter when urgent); about one
case in ten overruns it. A few cases are sent back after a failed check
(returned), paused (suspended/resumed), granted more time (extended) or
dropped as invalid or duplicate (cancelled).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

HOUR = 3600.0
MINUTE = 60.0
EXTENSION = "2h"
_EXTENSION_S = 2 * HOUR


@dataclass(frozen=True, slots=True)
class Category:
    """A case category: 4-digit code, name, responsible unit, time limit in seconds."""

    code: str
    name: str
    unit: str
    limit: float
    weight: float


CATEGORIES: tuple[Category, ...] = (
    Category("0101", "暴露垃圾", "unit-sanitation", 2 * HOUR, 0.25),
    Category("0102", "积存垃圾渣土", "unit-sanitation", 4 * HOUR, 0.10),
    Category("0203", "乱堆物堆料", "unit-sanitation", 4 * HOUR, 0.15),
    Category("0301", "占道经营", "unit-markets", 2 * HOUR, 0.20),
    Category("0401", "井盖破损", "unit-utilities", 1 * HOUR, 0.08),
    Category("0402", "道路破损", "unit-roads", 8 * HOUR, 0.07),
    Category("0501", "违规广告", "unit-markets", 8 * HOUR, 0.15),
)
URGENT_LIMIT = 1 * HOUR

Step = tuple[float, str, dict[str, Any]]
"""(time, event, extra payload fields) of one planned case event."""


def _minutes(rng: random.Random, low: float, high: float) -> float:
    # Log-uniform: most steps are quick, a few take much longer.
    return MINUTE * low * math.exp(math.log(high / low) * rng.random())


def plan_case(
    rng: random.Random,
    t0: float,
    urgent: bool,
    category: Category,
    reporter: str | None,
    enforcer: str | None,
) -> list[Step]:
    """Every event of one case reported at ``t0``, in time order."""
    steps: list[Step] = [(t0, "reported", {"officer": reporter} if reporter else {})]
    t = t0 + _minutes(rng, 3, 20)
    roll = rng.random()
    if roll < 0.01:
        return [*steps, (t, "cancelled", {})]
    steps.append((t, "filed", {}))
    t += _minutes(rng, 2, 15)
    if roll < 0.02:
        return [*steps, (t, "cancelled", {})]
    steps.append((t, "dispatched", {}))
    deadline = t + (URGENT_LIMIT if urgent else category.limit)
    by = {"officer": enforcer} if enforcer else {}
    t_acc = t + (_minutes(rng, 2, 10) if urgent else _minutes(rng, 5, 30))
    steps.append((t_acc, "accepted", by))
    t_busy = t_acc  # the latest interruption so far; later steps come after it
    if rng.random() < 0.03:
        t_busy = t_acc + rng.uniform(0.3, 0.8) * max(deadline - t_acc, MINUTE)
        steps.append((t_busy, "extended", {"extend": EXTENSION}))
        deadline += _EXTENSION_S
    window = max(deadline - t_acc, 10 * MINUTE)
    if rng.random() < 0.10:
        t_res = deadline + rng.uniform(0.05, 0.8) * window
    else:
        t_res = max(t_acc + rng.uniform(0.2, 0.95) * window, t_busy + _minutes(rng, 10, 60))
    if rng.random() < 0.03:
        t_sus = t_busy + rng.uniform(0.1, 0.5) * (t_res - t_busy)
        pause = _minutes(rng, 30, 180)
        steps += [(t_sus, "suspended", {}), (t_sus + pause, "resumed", {})]
        t_res += pause
    steps.append((t_res, "resolved", by))
    t = t_res + _minutes(rng, 10, 60)
    if rng.random() < 0.05:
        steps.append((t, "returned", {}))
        t += _minutes(rng, 30, 120)
        steps.append((t, "resolved", by))
        t += _minutes(rng, 10, 60)
    steps.append((t, "verified", {}))
    t += _minutes(rng, 5, 30)
    steps.append((t, "closed", {}))
    t += _minutes(rng, 30, 240)
    steps.append((t, "evaluated", {}))
    steps.sort(key=lambda s: s[0])
    return steps


def pick_category(rng: random.Random) -> Category:
    """A category drawn by how common it is."""
    return rng.choices(CATEGORIES, weights=[c.weight for c in CATEGORIES])[0]
