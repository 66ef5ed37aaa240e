"""The aiohttp application: health, readiness, metrics, the ``/api/v1`` routes and the console.

``/healthz`` is always open. ``/readyz`` too (it names parts, never data).
``/metrics`` needs an admin token when tokens are configured, unless
``api.metrics_public`` says otherwise. Everything under ``/api/v1`` needs a token
(or, with no tokens configured, a request from this machine), is rate limited per
token, and answers errors as JSON. The routes there are those of the table
(:mod:`api.routes`), each served behind the guard (:mod:`api.guard`), which
enforces its role, parameters and scope. Requests that act (POST, PUT, PATCH, DELETE)
and WebSocket handshakes from a browser must come from the console's own origin or
one of ``api.allowed_origins`` (:class:`api.auth.OriginPolicy`). The console's page
and assets are static and public; the page asks for a token and calls the API with it.

Connections are served through :mod:`api.connections` (deadlines for slow clients,
a cap): start the application with :class:`api.connections.GuardedSite`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from citywatch.alerting.service import Alerting
from citywatch.api import openapi
from citywatch.api.auth import Authenticator, Handler, OriginPolicy, RateLimiter
from citywatch.api.config import ApiConfig
from citywatch.api.connections import GUARD, ConnectionGuard, ConnectionMetrics, track_requests
from citywatch.api.errors import error_response, json_errors
from citywatch.api.guard import OPENAPI_PATH, guard, register
from citywatch.api.live import DeviceBoard
from citywatch.api.routes import ROUTES, Route
from citywatch.api.state import (
    ALERTING,
    AUTH,
    BOARD,
    CASES,
    CONFIG,
    GRIDS,
    HUB,
    INFLUX,
    LIMITER,
    PATROLS,
)
from citywatch.api.stream import Hub
from citywatch.influx.client import InfluxClient
from citywatch.rules.contract import CaseReader, FleetReader
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.patrols.specs import OFFICER_STATES, PATROL_RULES

log = logging.getLogger(__name__)
ReadyCheck = Callable[[], tuple[bool, str]]

CHECKS_KEY = web.AppKey("checks", dict[str, ReadyCheck])
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
ORIGINS_KEY = web.AppKey("origins", OriginPolicy)
VERSION = "1.0"


@dataclass
class ApiParts:
    """What the API reads; any part may be missing when its component runs elsewhere."""

    alerting: Alerting | None = None
    board: DeviceBoard | None = None
    hub: Hub | None = None
    cases: CaseReader | None = None
    """The case rule's read port (open cases, KPIs)."""
    patrols: FleetReader | None = None
    """The patrol rule's read port (officers on shift)."""
    influx: InfluxClient | None = None
    grids: Callable[[], Grids | None] = lambda: None


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Every part can do its job; 503 naming the failing part otherwise."""
    checks = request.app[CHECKS_KEY]
    results = {name: check() for name, check in checks.items()}
    ok = all(r[0] for r in results.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: {"ok": r[0], "detail": r[1]} for name, r in results.items()},
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    data = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(VERSION, request.app[CONFIG]))


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse acting and streaming for other web pages, before anything else is done."""
    request.app[ORIGINS_KEY].check(request)
    return await handler(request)


def make_app(
    registry: CollectorRegistry,
    checks: dict[str, ReadyCheck],
    cfg: ApiConfig | None = None,
    parts: ApiParts | None = None,
    routes: tuple[Route, ...] = ROUTES,
) -> web.Application:
    """Build the application around the registry, readiness checks and the parts it reads.

    ``routes`` (by default the table, :data:`api.routes.ROUTES`) are served behind the
    guard (:mod:`api.guard`).
    """
    cfg = cfg or ApiConfig()
    parts = parts or ApiParts()
    app = web.Application(
        client_max_size=cfg.max_body,
        middlewares=[track_requests, json_errors, same_origin, guard],
    )
    app[GUARD] = ConnectionGuard(cfg, ConnectionMetrics(registry))
    app[ORIGINS_KEY] = OriginPolicy(cfg)
    app[REGISTRY_KEY] = registry
    app[CHECKS_KEY] = checks
    app[CONFIG] = cfg
    app[AUTH] = Authenticator(cfg)
    app[LIMITER] = RateLimiter(cfg.rate_limit, cfg.rate_burst)
    app[ALERTING] = parts.alerting
    app[BOARD] = parts.board
    app[HUB] = parts.hub
    app[CASES] = parts.cases
    app[PATROLS] = parts.patrols
    app[INFLUX] = parts.influx
    app[GRIDS] = parts.grids
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(OPENAPI_PATH, openapi_json)
    register(app, routes, cfg)
    _add_console(app)
    if app[AUTH].open_locally:
        log.warning("no api.tokens configured: the API answers requests from this machine only")
    return app


def _add_console(app: web.Application) -> None:
    static = resources.files("citywatch.api") / "static"
    if not static.is_dir():
        return

    async def index(request: web.Request) -> web.StreamResponse:
        page = (static / "index.html").read_bytes()
        return web.Response(
            body=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    async def console_config(request: web.Request) -> web.Response:
        doc = {"tiles_url": request.app[CONFIG].tiles_url, "version": VERSION, "patrol": _PATROL}
        return web.json_response(doc)

    app.router.add_get("/", index)
    app.router.add_get("/console/config.json", console_config)
    app.router.add_static("/console/", str(static), show_index=False)


# The console's words for the patrol rules and the officer states, from the rules' specs.
_PATROL = {
    "rules": {spec.name: [spec.summary, spec.label] for spec in PATROL_RULES},
    "states": [[st.name, st.zh, st.en, st.colour] for st in OFFICER_STATES],
}

# The console loads nothing from elsewhere; tiles come from the configured server.
_CSP = (
    "default-src 'self'; img-src 'self' data: http: https:; connect-src 'self' ws: wss:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)

__all__ = ["ApiParts", "ReadyCheck", "error_response", "make_app"]
