"""The one table of API routes: method, path, handler, the role it needs, and its contract.

The server registers these and nothing else under ``/api/v1``; the OpenAPI
document (:mod:`api.openapi`) is generated from the same table, so the two
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from api.views import alerts, cases, fleet, grids, stream
from rules.cases.config import STAGES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, JSON Schema and meaning."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: str
    summary: str
    response: str
    params: tuple[Param, ...] = ()
    body: str | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=(400, 401, 403, 429))


def _s(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{pattern}$"}


CITY = Param("city", _s("[0-9]{6}"), "6-digit city (division) code")
GRID = Param("grid", _s("[0-9]{1,15}"), "prefix of grid codes: district, street, community or cell")
LIMIT = Param(
    "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 100)"
)
OFFSET = Param("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}, "items to skip")
PAGE = (LIMIT, OFFSET)
ID_PATH = Param("id", _s("[A-Za-z0-9_.-]{1,64}"), "id", where="path", required=True)
ALERT_ID = Param("id", _s("[0-9]{1,12}"), "alert id", where="path", required=True)
SILENCE_ID = Param("id", _s("[0-9a-f]{32}"), "silence id", where="path", required=True)
ID = _s("[A-Za-z0-9_.-]{1,64}")
# Unix seconds or ISO 8601 with an offset, from 2000 to 2100 (params.parse_instant).
INSTANT: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 946_684_800, "maximum": 4_102_444_800},
        {"type": "string", "format": "date-time"},
    ],
    "description": "Unix seconds or ISO 8601 with an offset, 2000 to 2100",
}
MONTH = _s("20[0-9]{2}-(0[1-9]|1[0-2])")


def _list(values: tuple[str, ...]) -> dict[str, Any]:
    alt = "|".join(values)
    return {"type": "string", "pattern": f"^({alt})(,({alt}))*$"}


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/devices",
        fleet.list_devices,
        "viewer",
        "Handhelds: last fix, heartbeat, battery, status",
        "DeviceList",
        (
            Param("status", _list(("online", "gps_lost", "offline")), "comma-separated statuses"),
            CITY,
            GRID,
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/devices/{id}",
        fleet.get_device,
        "viewer",
        "One handheld",
        "Device",
        (ID_PATH, CITY),
        errors=(400, 401, 403, 404, 409, 429),
    ),
    Route(
        "GET",
        "/api/v1/officers",
        fleet.list_officers,
        "viewer",
        "Officers on shift: grids, lead, patrol state, coverage so far",
        "OfficerList",
        (
            Param("state", _list(fleet.OFFICER_STATES), "comma-separated patrol states"),
            CITY,
            GRID,
            Param("lead", ID, "patrol lead"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/officers/{id}/track",
        fleet.officer_track,
        "viewer",
        "An officer's GPS track from InfluxDB, as a GeoJSON Feature",
        "Track",
        (
            ID_PATH,
            CITY,
            Param("from", INSTANT, "start (default: 8 h before to)"),
            Param("to", INSTANT, "end (default: now)"),
        ),
        errors=(400, 401, 403, 404, 429, 502, 503),
    ),
    Route(
        "GET",
        "/api/v1/cases",
        cases.list_cases,
        "viewer",
        "Open cases with step, deadline, time left or overdue, and light",
        "CaseList",
        (
            Param("state", {"type": "string", "enum": ["open"]}, "only open cases are listed"),
            Param("light", _list(cases.LIGHTS), "comma-separated lights"),
            CITY,
            GRID,
            Param("unit", {"type": "string", "minLength": 1, "maxLength": 64}, "responsible unit"),
            Param("step", {"type": "string", "enum": list(STAGES)}, "current step"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/alerts",
        alerts.list_alerts,
        "viewer",
        "Alerts, newest first (open ones by default)",
        "AlertList",
        (
            Param(
                "status", _list(("firing", "acknowledged", "resolved")), "comma-separated statuses"
            ),
            Param("severity", _list(alerts.SEVERITIES), "comma-separated severities"),
            CITY,
            GRID,
            Param("rule", ID, "rule"),
            Param("subject", {"type": "string", "enum": list(alerts.SUBJECTS)}, "subject kind"),
            Param("officer", ID, "officer"),
            Param("silenced", {"type": "string", "enum": ["true", "false"]}, "only (un)silenced"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/alerts/{id}",
        alerts.get_alert,
        "viewer",
        "One alert with its history",
        "AlertDetail",
        (ALERT_ID,),
        errors=(400, 401, 403, 404, 429),
    ),
    Route(
        "POST",
        "/api/v1/alerts/{id}/ack",
        alerts.ack_alert,
        "supervisor",
        "Acknowledge an alert: its escalation and reminders stop",
        "Alert",
        (ALERT_ID,),
        body="Ack",
        errors=(400, 401, 403, 404, 409, 413, 415, 429),
    ),
    Route(
        "GET", "/api/v1/silences", alerts.list_silences, "viewer", "Silences", "SilenceList", PAGE
    ),
    Route(
        "POST",
        "/api/v1/silences",
        alerts.create_silence,
        "supervisor",
        "Silence the alerts matching every matcher, for a time window",
        "Silence",
        body="NewSilence",
        status=201,
        errors=(400, 401, 403, 413, 415, 429),
    ),
    Route(
        "DELETE",
        "/api/v1/silences/{id}",
        alerts.delete_silence,
        "supervisor",
        "End a silence now",
        "Silence",
        (SILENCE_ID,),
        errors=(400, 401, 403, 404, 429),
    ),
    Route(
        "GET",
        "/api/v1/kpis",
        cases.list_kpis,
        "viewer",
        "Case KPIs (CJ/T 292) per city, unit and month",
        "KpiList",
        (
            CITY,
            Param(
                "unit",
                {"type": "string", "minLength": 1, "maxLength": 64},
                "unit, or _all for the city",
            ),
            Param("from", MONTH, "first month (default: this month)"),
            Param("to", MONTH, "last month (default: this month)"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/grids",
        grids.list_grids,
        "viewer",
        "Unit grid cells as a GeoJSON FeatureCollection (property code)",
        "FeatureCollection",
        (GRID,),
        errors=(400, 401, 403, 404, 429),
    ),
    Route(
        "GET",
        "/api/v1/stream",
        stream.stream,
        "viewer",
        "WebSocket of alert changes and positions, resumable",
        "StreamInfo",
        (
            Param("types", _list(stream.KINDS), "event kinds"),
            CITY,
            GRID,
            Param(
                "resume",
                {"type": "string", "minLength": 1, "maxLength": 64},
                "resume token of the last event seen",
            ),
            Param(
                "token",
                {"type": "string", "minLength": 1},
                "bearer token, for browsers' WebSockets",
            ),
        ),
    ),
)
