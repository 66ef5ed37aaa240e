"""``/api/v1/cases`` (open cases and their lights) and ``/api/v1/kpis`` (CJ/T 292 KPIs)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from citywatch.api import params
from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError
from citywatch.api.state import CASES
from citywatch.rules.cases.kpi import month_bounds, month_label
from citywatch.rules.contract import CaseReader

LIGHTS = ("yellow", "red", "none")
MAX_MONTHS = 24


def _rule(request: web.Request) -> CaseReader:
    rule = request.app[CASES]
    if rule is None:
        raise ApiError(503, "the case rule does not run in this process (--only)")
    return rule


async def list_cases(
    request: web.Request,
    who: Principal,
    *,
    state: str | None,
    light: frozenset[str] | None,
    city: str | None,
    grid: str | None,
    unit: str | None,
    step: str | None,
    limit: int,
    offset: int,
) -> web.Response:
    """Open cases with step, deadline, time left or overdue, and light; reddest first."""
    del state  # only open cases are held live; closed ones are in InfluxDB (case_event)
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
        if not who.sees(c["city"], c["grid"]):
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


async def list_kpis(
    request: web.Request,
    who: Principal,
    *,
    city: str | None,
    unit: str | None,
    first: tuple[int, int] | None,
    last: tuple[int, int] | None,
    limit: int,
    offset: int,
) -> web.Response:
    """KPIs per city, unit and month, from ``from`` to ``to`` (months, default this month).

    Grid-scoped tokens never get here (the route's scope rule: KPIs are per city).
    """
    rule = _rule(request)
    tz = rule.kpi_timezone
    now = rule.clock.now()
    year, month = map(int, month_label(now, tz).split("-"))
    first = first or (year, month)
    last = last or (year, month)
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
            if who.cities and k.city not in who.cities:
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
