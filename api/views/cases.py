"""``/api/v1/cases`` (open cases and their lights) and ``/api/v1/kpis`` (CJ/T 292 KPIs)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from api import params
from api.auth import principal
from api.errors import ApiError
from api.state import CASES, CONFIG
from rules.cases.config import STAGES
from rules.cases.kpi import month_bounds, month_label
from rules.contract import CaseReader

LIGHTS = ("yellow", "red", "none")
_MONTH = re.compile(r"(20[0-9]{2})-(0[1-9]|1[0-2])").fullmatch
MAX_MONTHS = 24


def _rule(request: web.Request) -> CaseReader:
    rule = request.app[CASES]
    if rule is None:
        raise ApiError(503, "the case rule does not run in this process (--only)")
    return rule


async def list_cases(request: web.Request) -> web.Response:
    """Open cases with step, deadline, time left or overdue, and light; reddest first."""
    p = principal(request)
    state = params.choice(request, "state", ("open",))
    del state  # only open cases are held live; closed ones are in InfluxDB (case_event)
    light = params.choices(request, "light", LIGHTS)
    city = params.text(request, "city", params.CITY, "a 6-digit city code")
    grid = params.text(request, "grid", params.GRID_PREFIX, "a prefix of grid codes")
    unit = params.text(request, "unit", lambda v: len(v) <= 64, "a unit")
    step = params.choice(request, "step", STAGES)
    limit, offset = params.page(request, request.app[CONFIG].page_max)
    out = []
    for c in _rule(request).open_cases():
        if city and c["city"] != city:
            continue
        if grid and not (c["grid"] or "").startswith(grid):
            continue
        if unit and c["unit"] != unit:
            continue
        if step and c["step"] != step:
            continue
        if light and (c["light"] or "none") not in light:
            continue
        if not p.sees(c["city"], c["grid"]):
            continue
        out.append(c)
    rank = {"red": 0, "yellow": 1, None: 2}
    out.sort(
        key=lambda c: (
            rank.get(c["light"], 2),
            c["remaining"] if c["remaining"] is not None else 1e18,
        )
    )
    return params.respond(params.paginate(out, limit, offset))


def _month(value: str | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    m = _MONTH(value)
    if not m:
        raise ApiError(400, f"parameter {name!r} must be a month from 2000-01 to 2099-12")
    return int(m.group(1)), int(m.group(2))


async def list_kpis(request: web.Request) -> web.Response:
    """KPIs per city, unit and month, from ``from`` to ``to`` (months, default this month)."""
    p = principal(request)
    if p.grids:
        raise ApiError(
            403, f"token {p.name!r} is scoped to grids; KPIs are per city and unit, not per grid"
        )
    rule = _rule(request)
    city = params.text(request, "city", params.CITY, "a 6-digit city code")
    unit = params.text(request, "unit", lambda v: len(v) <= 64, "a unit")
    limit, offset = params.page(request, request.app[CONFIG].page_max)
    tz = rule.kpi_timezone
    now = rule.clock.now()
    this = month_label(now, tz)
    first = _month(params.text(request, "from"), "from") or _month(this, "from")
    last = _month(params.text(request, "to"), "to") or _month(this, "to")
    assert first is not None and last is not None
    months = []
    y, m = first
    while (y, m) <= last:
        months.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        if len(months) > MAX_MONTHS:
            raise ApiError(400, f"at most {MAX_MONTHS} months at once")
    if not months:
        raise ApiError(400, "parameter 'from' must not be after 'to'")
    periods = []
    for y, m in months:
        start, end = _bounds(y, m, tz)
        periods.append((start, min(end, now)))
    periods = [(s, e) for s, e in periods if s < now]
    results = await rule.kpis_for(periods) if periods else []
    items: list[dict[str, Any]] = []
    for (start, end), kpis in zip(periods, results, strict=True):
        for k in kpis:
            if city and k.city != city:
                continue
            if unit and (k.unit or "_all") != unit:
                continue
            if p.cities and k.city not in p.cities:
                continue
            items.append(
                {
                    "city": k.city,
                    "unit": k.unit or "_all",
                    "period": month_label(start, tz),
                    "start": start,
                    "as_of": end,
                    "values": k.values(),
                }
            )
    return params.respond(params.paginate(items, limit, offset))


def _bounds(year: int, month: int, tz: str) -> tuple[float, float]:
    import datetime
    from zoneinfo import ZoneInfo

    mid = datetime.datetime(year, month, 15, tzinfo=ZoneInfo(tz)).timestamp()
    return month_bounds(mid, tz)
