"""The service: wires the stages together in one process, or runs some of them alone.

broker -> collector -> sink (InfluxDB writer with its spool; the rules come
next) -> alerting; the HTTP server exposes health, readiness and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType

from aiohttp import web
from prometheus_client import CollectorRegistry

from api.server import ReadyCheck, make_app
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.writer import InfluxWriter
from citywatch.settings import Settings
from citywatch.sink import FanOut, Sink
from collectors.decode import BatchDecoder
from collectors.metrics import CollectorMetrics
from collectors.mqtt import MqttSource
from collectors.service import Collector
from collectors.topics import Router

log = logging.getLogger(__name__)

COMPONENTS = ("collector", "api")


class Service:
    """The components of citywatch, as one async context manager."""

    def __init__(
        self,
        settings: Settings,
        components: Iterable[str] = COMPONENTS,
        registry: CollectorRegistry | None = None,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.settings = settings
        self.components = set(components)
        unknown = self.components - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown component(s): {', '.join(sorted(unknown))}")
        self.registry = registry or CollectorRegistry()
        self.extra_sinks = tuple(extra_sinks)
        self.checks: dict[str, ReadyCheck] = {}
        self._stack = contextlib.AsyncExitStack()
        self.writer: InfluxWriter | None = None
        self.source: MqttSource | None = None
        self.collector: Collector | None = None
        self.http_port: int | None = None

    async def __aenter__(self) -> Service:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        s = self.settings
        data = s.data_path
        data.mkdir(parents=True, exist_ok=True)
        if "collector" in self.components:
            self.writer = await self._stack.enter_async_context(
                InfluxWriter(s.influx, s.spool, data / "spool", WriterMetrics(self.registry))
            )
            self.checks["storage"] = self.writer.ready
            cmetrics = CollectorMetrics(self.registry)
            router = Router(s.mqtt.topic_root, s.mqtt.owntracks_root)
            self.source = await self._stack.enter_async_context(
                MqttSource(s.mqtt, router.subscriptions(), cmetrics)
            )
            source = self.source
            self.checks["broker"] = lambda: (
                (True, "connected")
                if source.connected
                else (False, f"not connected to {s.mqtt.url}")
            )
            decoder = BatchDecoder(s.ingest, router, cmetrics)
            sink = FanOut(self.writer, *self.extra_sinks)
            # Entered last so it is stopped first: no new batches while the writer drains.
            self.collector = await self._stack.enter_async_context(
                Collector(self.source, decoder, sink, cmetrics, batch_max=s.ingest.batch_max)
            )
        await self._start_http()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The background tasks that must run for as long as the service does."""
        out: list[asyncio.Task[None]] = []
        for part in (self.writer, self.source, self.collector):
            if part is not None:
                out.extend(part.tasks)
        return out

    async def _start_http(self) -> None:
        host, port = self.settings.api.host_port
        runner = web.AppRunner(make_app(self.registry, self.checks), access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else port
        log.info("HTTP on %s:%s (/healthz, /readyz, /metrics)", host, self.http_port)


class ComponentFailed(RuntimeError):
    """A background task of a component ended; the process should exit and be restarted."""


async def run_until_stopped(service: Service, stop: asyncio.Event) -> None:
    """Run ``service`` until ``stop`` is set; raise :class:`ComponentFailed` if a part dies."""
    async with service:
        stopper = asyncio.create_task(stop.wait())
        watched = [stopper, *service.tasks()]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper:
                exc = None if task.cancelled() else task.exception()
                raise ComponentFailed(f"{task.get_name()} ended: {exc!r}")
