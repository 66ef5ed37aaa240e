"""The one table of API routes: each line is a route's whole contract.

A :class:`Route` says, once, its method and path, its handler, the role it needs,
its scope rule (:mod:`api.scope`) and its parameters (path, query, JSON body) with
their kinds (:mod:`api.params`: types and bounds). Everything else derives from the
table: the server registers these and nothing else under ``/api/v1``; the guard
(:mod:`api.guard`) authenticates each call, checks its role and scope, parses its
parameters and calls the handler with them as typed keyword arguments; the OpenAPI
document (:mod:`api.openapi`) states the same. So what is documented is what is
enforced.

A handler is ``async def h(request, who, *, <one keyword per parameter>)``: the
request (for the parts it reads), the caller (:class:`api.auth.Principal`, for
judging items by scope) and the parsed values. ``tests/api/test_route_table.py``
holds every handler's signature to its line.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from citywatch.alerting.model import OPEN, STATES
from citywatch.api.config import ROLES, ApiConfig
from citywatch.api.live import DEVICE_STATES
from citywatch.api.params import (
    CITY,
    GRID_PREFIX,
    ID,
    AnyOf,
    Flag,
    Ident,
    Instant,
    Integer,
    Known,
    Matchers,
    Month,
    OneOf,
    PageSize,
    Param,
    Serial,
    Text,
    Words,
)
from citywatch.api.scope import ITEMS, PerCity, Pins, Scope
from citywatch.api.views import alerts, cases, fleet, grids, stream
from citywatch.rules.cases.config import STAGES

Handler = Callable[..., Awaitable[web.StreamResponse]]
"""``handler(request, who, **params)``: see the module's docstring."""

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_IN_PATH = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    """One endpoint: everything the guard enforces and the document says about it.

    ``body`` names the JSON body's schema in the document when the route takes one
    (its fields are the ``params`` in the body; the body itself is then required).
    ``websocket``: the route is a WebSocket; its bearer token may also come as
    ``?token=`` (browsers cannot set headers on one), and, like a request that acts,
    pages of other sites may not open it (:class:`api.auth.OriginPolicy`).
    """

    method: str
    path: str
    handler: Handler
    role: str
    scope: Scope
    summary: str
    response: str
    params: tuple[Param[Any], ...] = ()
    body: str | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=(400, 401, 403, 429))
    websocket: bool = False

    def __post_init__(self) -> None:
        what = f"{self.method} {self.path}"
        if self.method not in METHODS or not self.path.startswith("/api/v1/"):
            raise ValueError(f"{what}: a method of {sorted(METHODS)} on a path under /api/v1/")
        if self.role not in ROLES:
            raise ValueError(f"{what}: role must be one of {', '.join(ROLES)}")
        in_path = _IN_PATH.findall(self.path)
        declared = [p.name for p in self.params if p.where == "path"]
        if sorted(in_path) != sorted(declared):
            raise ValueError(f"{what}: path parameters {in_path} but declared {declared}")
        args = [p.arg for p in self.params]
        if len(args) != len(set(args)) or not all(a.isidentifier() for a in args):
            raise ValueError(f"{what}: parameters' arguments must be distinct names: {args}")
        if (self.body is None) != (not self.body_params):
            raise ValueError(f"{what}: a body's name and its fields go together")

    @property
    def label(self) -> str:
        """``GET /api/v1/alerts``, as tests and the docs name it."""
        return f"{self.method} {self.path}"

    @property
    def body_params(self) -> tuple[Param[Any], ...]:
        return tuple(p for p in self.params if p.where == "body")

    def configured(self, cfg: ApiConfig) -> Route:
        """This route with its parameters' bounds from the configuration (a page's size)."""
        params = tuple(p.configured(cfg) for p in self.params)
        if all(a is b for a, b in zip(params, self.params, strict=True)):
            return self
        return dataclasses.replace(self, params=params)


CITY_PARAM = Param(
    "city", Text("a 6-digit city code", CITY, example="321200"), "6-digit city (division) code"
)
GRID = Param(
    "grid",
    Text("a prefix of grid codes", GRID_PREFIX, example="321202"),
    "prefix of grid codes: district, street, community or cell",
)
LIMIT = Param("limit", PageSize(1, 1000), "page size (default 100)", default=100)
OFFSET = Param("offset", Integer(0, 10_000_000), "items to skip", default=0)
PAGE = (LIMIT, OFFSET)
ALERT_ID = Param("id", Serial(12), "alert id", where="path", arg="alert_id")
UNIT = Text("a unit")
TOKEN = Param("token", Text("a token", most=None), "bearer token, for browsers' WebSockets")
"""The query parameter a WebSocket route also takes (the guard reads it)."""

# The body of a silence must pin city and grid, for a scoped token to make it.
SILENCE_PINS = Pins(
    lambda args: alerts.pinned(args["matchers"]), "grid = code, or grid =~ <digits>.*"
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/devices",
        fleet.list_devices,
        "viewer",
        ITEMS,
        "Handhelds: last fix, heartbeat, battery, status",
        "DeviceList",
        (
            Param("status", AnyOf(DEVICE_STATES), "comma-separated statuses"),
            CITY_PARAM,
            GRID,
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/devices/{id}",
        fleet.get_device,
        "viewer",
        ITEMS,
        "One handheld",
        "Device",
        (Param("id", Ident(), "device id", where="path", arg="device"), CITY_PARAM),
        errors=(400, 401, 403, 404, 409, 429),
    ),
    Route(
        "GET",
        "/api/v1/officers",
        fleet.list_officers,
        "viewer",
        ITEMS,
        "Officers on shift: grids, lead, patrol state, coverage so far",
        "OfficerList",
        (
            Param("state", AnyOf(fleet.OFFICER_STATES), "comma-separated patrol states"),
            CITY_PARAM,
            GRID,
            Param("lead", Text("a lead id", ID, example="lead-7"), "patrol lead"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/officers/{id}/track",
        fleet.officer_track,
        "viewer",
        ITEMS,
        "An officer's GPS track from InfluxDB, as a GeoJSON Feature",
        "Track",
        (
            Param("id", Ident(), "officer id", where="path", arg="officer"),
            CITY_PARAM,
            Param("from", Instant(), "start (default: 8 h before to)", arg="start"),
            Param("to", Instant(), "end (default: now)", arg="end"),
        ),
        errors=(400, 401, 403, 404, 429, 502, 503),
    ),
    Route(
        "GET",
        "/api/v1/cases",
        cases.list_cases,
        "viewer",
        ITEMS,
        "Open cases with step, deadline, time left or overdue, and light",
        "CaseList",
        (
            Param("state", OneOf(("open",)), "only open cases are listed"),
            Param("light", AnyOf(cases.LIGHTS), "comma-separated lights"),
            CITY_PARAM,
            GRID,
            Param("unit", UNIT, "responsible unit"),
            Param("step", OneOf(STAGES), "current step"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/alerts",
        alerts.list_alerts,
        "viewer",
        ITEMS,
        "Alerts, newest first (open ones by default)",
        "AlertList",
        (
            Param("status", AnyOf(STATES), "comma-separated statuses", default=OPEN),
            Param("severity", AnyOf(alerts.SEVERITIES), "comma-separated severities"),
            CITY_PARAM,
            GRID,
            Param("rule", Text("a rule name", ID, example="device_offline"), "rule"),
            Param("subject", OneOf(alerts.SUBJECTS), "subject kind"),
            Param("officer", Text("an officer id", ID, example="off-7"), "officer"),
            Param("silenced", Flag(), "only (un)silenced"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/alerts/{id}",
        alerts.get_alert,
        "viewer",
        ITEMS,
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
        ITEMS,
        "Acknowledge an alert: its escalation and reminders stop",
        "Alert",
        (
            ALERT_ID,
            Param("by", Words(1, 64), "who acknowledges (default: the token's name)", "body"),
            Param("note", Words(0, 500), "a note", "body"),
        ),
        body="Ack",
        errors=(400, 401, 403, 404, 409, 413, 415, 429),
    ),
    Route(
        "GET",
        "/api/v1/silences",
        alerts.list_silences,
        "viewer",
        ITEMS,
        "Silences",
        "SilenceList",
        PAGE,
    ),
    Route(
        "POST",
        "/api/v1/silences",
        alerts.create_silence,
        "supervisor",
        SILENCE_PINS,
        "Silence the alerts matching every matcher, for a time window",
        "Silence",
        (
            Param("matchers", Matchers(), "all must match", "body", required=True),
            Param("starts_at", Instant(), "start (default: now)", "body"),
            Param("ends_at", Instant(), "end, in the future", "body", required=True),
            Param("comment", Words(1, 500, said=True), "why", "body", required=True),
            Param(
                "created_by",
                Words(1, 64, said=True),
                "who silences (default: the token's name)",
                "body",
            ),
        ),
        body="NewSilence",
        status=201,
        errors=(400, 401, 403, 413, 415, 429),
    ),
    Route(
        "DELETE",
        "/api/v1/silences/{id}",
        alerts.delete_silence,
        "supervisor",
        ITEMS,
        "End a silence now",
        "Silence",
        (
            Param(
                "id",
                Known("[0-9a-f]{32}", "silence", example="0f" * 16),
                "silence id",
                "path",
                arg="silence",
            ),
        ),
        errors=(400, 401, 403, 404, 429),
    ),
    Route(
        "GET",
        "/api/v1/kpis",
        cases.list_kpis,
        "viewer",
        PerCity("KPIs are per city and unit, not per grid"),
        "Case KPIs (CJ/T 292) per city, unit and month",
        "KpiList",
        (
            CITY_PARAM,
            Param("unit", UNIT, "unit, or _all for the city"),
            Param("from", Month(), "first month (default: this month)", arg="first"),
            Param("to", Month(), "last month (default: this month)", arg="last"),
            *PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/v1/grids",
        grids.list_grids,
        "viewer",
        ITEMS,
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
        ITEMS,
        "WebSocket of alert changes and positions, resumable",
        "StreamInfo",
        (
            Param("types", AnyOf(stream.KINDS), "event kinds", default=frozenset(stream.KINDS)),
            CITY_PARAM,
            GRID,
            Param("resume", Text("a resume token"), "resume token of the last event seen"),
        ),
        websocket=True,
    ),
)
