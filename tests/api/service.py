"""The API tests' client, their tokens, and the service they run it against."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from citywatch.app.service import Service
from tests.helpers import FAST_OFFLINE, connected, settings_for
from tests.services import Influx, Mosquitto

CITY = "321200"
TOKENS = [
    {"name": "duty-desk", "token": "duty-secret-1", "role": "supervisor"},
    {
        "name": "lead-7",
        "token": "lead7-secret",
        "role": "supervisor",
        "cities": [CITY],
        "grids": ["321202001"],
    },
    {
        "name": "lead-8",
        "token": "lead8-secret",
        "role": "supervisor",
        "cities": [CITY],
        "grids": ["321203"],
    },
    {"name": "wall", "token": "wall-viewer", "role": "viewer"},
    {"name": "root", "token": "root-admin-1", "role": "admin"},
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """Calls the API at ``base``, as the duty desk unless told another ``token`` (or None)."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(
        self, method: str, path: str, token: str | None = "duty-secret-1", **kw: Any
    ) -> tuple[int, Any]:
        headers = kw.pop("headers", {})
        if token is not None:
            headers.update(auth(token))
        async with self.session.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            try:
                return r.status, orjson.loads(body)
            except orjson.JSONDecodeError:
                return r.status, body


@contextlib.asynccontextmanager
async def api_service(
    mosquitto: Mosquitto, influx: Influx, db: str, tmp_path: Path, **api: Any
) -> AsyncIterator[tuple[Service, Api]]:
    """The collector and rules with the API (``api`` its settings, no rate limit to speak
    of) and handhelds offline after 1 s, connected; and a client of that API."""
    settings = settings_for(
        mosquitto.url,
        influx.url,
        db,
        tmp_path / "var",
        patrols=FAST_OFFLINE,
        api={"rate_limit": 1000.0, "rate_burst": 1000, **api},
    )
    async with connected(settings, ["collector", "rules"]) as svc, aiohttp.ClientSession() as s:
        yield svc, Api(f"http://127.0.0.1:{svc.http_port}", s)
