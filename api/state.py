"""What the API reads: the running components, held in the application under typed keys."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from citywatch.alerting.service import Alerting
from citywatch.api.auth import Authenticator, RateLimiter
from citywatch.api.config import ApiConfig
from citywatch.api.live import DeviceBoard
from citywatch.api.stream import Hub
from citywatch.influx.client import InfluxClient
from citywatch.rules.contract import CaseReader, FleetReader
from citywatch.rules.patrols.grids import Grids

CONFIG = web.AppKey("config", ApiConfig)
AUTH = web.AppKey("auth", Authenticator)
LIMITER = web.AppKey("limiter", RateLimiter)
ALERTING: web.AppKey[Alerting | None] = web.AppKey("alerting")
BOARD: web.AppKey[DeviceBoard | None] = web.AppKey("board")
HUB: web.AppKey[Hub | None] = web.AppKey("hub")
CASES: web.AppKey[CaseReader | None] = web.AppKey("cases")
PATROLS: web.AppKey[FleetReader | None] = web.AppKey("patrols")
INFLUX: web.AppKey[InfluxClient | None] = web.AppKey("influx")
GRIDS: web.AppKey[Callable[[], Grids | None]] = web.AppKey("grids")
