"""The aiohttp application: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], tuple[bool, str]]

CHECKS_KEY = web.AppKey("checks", dict[str, ReadyCheck])
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)


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


def make_app(registry: CollectorRegistry, checks: dict[str, ReadyCheck]) -> web.Application:
    """Build the application around a metrics registry and named readiness checks."""
    app = web.Application(client_max_size=64 * 1024)
    app[REGISTRY_KEY] = registry
    app[CHECKS_KEY] = checks
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
