"""The guard of ``/api/v1``: every call passes it, as its line in :data:`api.routes.ROUTES` says.

In order, for a request to a route of the table:

1. who calls: a bearer token (``?token=`` too where the route says so), or, with
   no tokens configured, a request from this machine (401, 403);
2. how often: a rate limit per caller, and failed logins per address (429);
3. the role the route needs (403);
4. its parameters, in the path, the query and the JSON body, each read and checked
   by its kind (400, and 413 or 415 for a body);
5. its scope rule, on the parsed values (403).

Only then is the route's handler called, with the parsed values as keyword
arguments: handlers neither authenticate, nor check roles, nor parse. Other paths
under ``/api/v1`` (none but the OpenAPI document, which is public) are
authenticated before they get their 404 or 405, and ``/metrics``, when it is not
public, needs an admin. (Pages of other sites are refused before this, by
:class:`api.auth.OriginPolicy`; slow clients at the connection, by
:mod:`api.connections`.)

The router holds an :class:`Endpoint` per route; one reached without the guard
having passed its request refuses it (401), so no route can be served unguarded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from citywatch.api.auth import PRINCIPAL_KEY, Handler, Principal
from citywatch.api.config import ApiConfig
from citywatch.api.errors import ApiError
from citywatch.api.params import json_body, query_value
from citywatch.api.routes import Route
from citywatch.api.state import AUTH, CONFIG, LIMITER

ARGS_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("args", dict)
OPENAPI_PATH = "/api/v1/openapi.json"


@dataclass(frozen=True)
class Endpoint:
    """What the router holds for one route of the table (its bounds configured)."""

    route: Route

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Call the handler with what the guard found: the caller and the parameters."""
        try:
            who, args = request[PRINCIPAL_KEY], request[ARGS_KEY]
        except KeyError:
            raise ApiError(401, "not authenticated") from None
        return await self.route.handler(request, who, **args)

    async def admit(self, request: web.Request, who: Principal) -> dict[str, Any]:
        """The handler's keyword arguments, once role, parameters and scope are checked."""
        route = self.route
        who.require(route.role)
        args: dict[str, Any] = {}
        for p in route.params:
            if p.where == "path":
                args[p.arg] = p.read(request.match_info[p.name])
            elif p.where == "query":
                args[p.arg] = p.read(query_value(request, p.name))
        if route.body is not None:
            doc = await json_body(request)
            for p in route.body_params:
                # A field given as null is a field left out.
                args[p.arg] = p.read(doc.get(p.name))
        route.scope.check(who, args)
        return args


def register(app: web.Application, routes: Iterable[Route], cfg: ApiConfig) -> None:
    """Add each route to ``app``'s router, behind the guard."""
    for r in routes:
        app.router.add_route(r.method, r.path, Endpoint(r.configured(cfg)).serve)


def _endpoint(request: web.Request) -> Endpoint | None:
    owner = getattr(request.match_info.handler, "__self__", None)
    return owner if isinstance(owner, Endpoint) else None


def _guarded(path: str, app: web.Application) -> bool:
    if path.startswith("/api/v1/") and path != OPENAPI_PATH:
        return True
    return path == "/metrics" and not app[CONFIG].metrics_open


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and rate limit; for a route of the table, its role, parameters, scope."""
    if not _guarded(request.path, request.app):
        return await handler(request)
    endpoint = _endpoint(request)
    auth = request.app[AUTH]
    if (
        endpoint is not None
        and endpoint.route.websocket
        and "token" in request.query
        and not auth.open_locally
    ):
        # Browsers cannot set headers on a WebSocket: the token may come in the query.
        token = request.query["token"]
        request = request.clone(headers={**request.headers, "Authorization": f"Bearer {token}"})
    limiter = request.app[LIMITER]
    try:
        who = auth.authenticate(request)
    except ApiError as exc:
        if exc.status == 401:
            # Guessing tokens costs from the same budget as using one, per address.
            wait = limiter.allow(f"unauthenticated:{request.remote}")
            if wait > 0:
                raise ApiError(
                    429, "too many failed logins", {"Retry-After": str(math.ceil(wait))}
                ) from None
        raise
    if request.path == "/metrics":
        who.require("admin")
    wait = limiter.allow(who.name if not auth.open_locally else str(request.remote))
    if wait > 0:
        raise ApiError(
            429, f"rate limit of token {who.name!r} exceeded", {"Retry-After": str(math.ceil(wait))}
        )
    request[PRINCIPAL_KEY] = who
    if endpoint is not None:
        request[ARGS_KEY] = await endpoint.admit(request, who)
    return await handler(request)
