"""Errors as JSON: every refusal says what is wrong, with the right status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Answer ``status`` with ``{"error": {"status": ..., "message": ...}}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"status": status, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals and failures into JSON; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"no such resource: {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
            413: "request body too large",
        }.get(exc.status, exc.reason)
        # Keep what aiohttp says beside the status (a 405's Allow), not its body's type.
        keep = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        return error_response(exc.status, message, keep)
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # The client went, or was cut off (api.body_timeout) while its body was read:
            # nobody reads an answer, and a line for each such client would flood the log.
            log.debug("%s %s: the connection closed", request.method, request.path)
            return error_response(400, "the connection closed before the request was read")
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (logged)")


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
