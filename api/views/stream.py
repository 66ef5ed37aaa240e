"""``/api/v1/stream``: a WebSocket of alert changes and positions, resumable.

Query: ``types`` (``alert``, ``position``; both by default), ``city``, ``grid``
(prefix), ``resume`` (the ``resume`` of the last event seen). Browsers cannot
set headers on a WebSocket, so the token may also come as ``?token=``.
The first message is ``hello`` (with the current ``resume``); then events in
order; ``reset`` means events were missed (resume too old, a restart, or the
client was too slow): reload the lists, then reconnect without ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import WSMsgType, web

from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError
from citywatch.api.state import HUB
from citywatch.api.stream import Filter, Hub, Subscriber

KINDS = ("alert", "position")
MAX_PER_CALLER = 100  # streams open at once per token: each costs every event a filter


def hub_of(request: web.Request) -> Hub:
    hub = request.app[HUB]
    if hub is None:
        raise ApiError(503, "the stream is not available in this process")
    return hub


async def stream(
    request: web.Request,
    who: Principal,
    *,
    types: frozenset[str],
    city: str | None,
    grid: str | None,
    resume: str | None,
) -> web.StreamResponse:
    """Subscribe the caller to the events of ``types`` in ``city`` and ``grid``, its scope."""
    hub = hub_of(request)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "this endpoint speaks WebSocket (Upgrade: websocket)")
    if hub.per_caller.get(who.name, 0) >= MAX_PER_CALLER:
        raise ApiError(429, f"token {who.name!r} already has {MAX_PER_CALLER} streams open")
    await ws.prepare(request)
    sub, missed = hub.subscribe(Filter(who, types, city, grid), resume)
    try:
        await ws.send_str(
            orjson.dumps(
                {
                    "type": "hello",
                    "resume": hub.token(hub.last),
                    "principal": who.name,
                    "role": who.role,
                }
            ).decode()
        )
        if missed is None:
            await ws.send_str(
                orjson.dumps({"type": "reset", "reason": "resume token too old"}).decode()
            )
        else:
            for e in missed:
                await ws.send_str(e.text)
        # Two tasks per client, not one per event: one sends, one reads until the client goes.
        sender = asyncio.create_task(_send(ws, sub))
        reader = asyncio.create_task(_drain(ws))
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        for t in (sender, reader):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await t
    finally:
        hub.unsubscribe(sub)
        await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, sub: Subscriber) -> None:
    """Send the client's events as they come, everything queued at once after a wait."""
    while not ws.closed:
        event = await sub.queue.get()
        while True:
            if event is None or sub.overflowed:
                await ws.send_str(orjson.dumps({"type": "reset", "reason": "too slow"}).decode())
                return
            await ws.send_str(event.text)
            try:
                event = sub.queue.get_nowait()
            except asyncio.QueueEmpty:
                break


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, until it closes."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
