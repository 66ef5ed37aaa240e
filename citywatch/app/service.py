"""The service: wires the stages together in one process, or runs some of them alone.

broker -> collector -> sink (the InfluxDB writer with its spool, the rules, and
alerting for acknowledgements sent from handhelds) -> alert events -> alerting;
the HTTP server exposes health, readiness and metrics. Alone, ``--only collector``
stores what arrives and ``--only rules`` supervises with a broker session of its
own, so the two scale apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from citywatch.alerting.channels import Channels
from citywatch.alerting.metrics import AlertingMetrics
from citywatch.alerting.notifiers.mqtt import MqttPush
from citywatch.alerting.service import Alerting
from citywatch.api.connections import GuardedSite
from citywatch.api.live import DeviceBoard
from citywatch.api.server import ApiParts, ReadyCheck, make_app
from citywatch.api.stream import Hub, StreamMetrics
from citywatch.api.views.alerts import alert_streamer
from citywatch.app.settings import Settings
from citywatch.clock import Clock, SystemClock
from citywatch.collectors.admission import Admission
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.mqtt import MqttSource
from citywatch.collectors.service import Collector
from citywatch.collectors.topics import Router
from citywatch.config import ConfigError
from citywatch.deadletter import DeadLetters
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.writer import InfluxWriter
from citywatch.publisher import MqttPublisher, PublisherMetrics
from citywatch.roster import Roster, load_roster
from citywatch.rules.alert_log import AlertEventMetrics, LoggingAlertSink
from citywatch.rules.contract import CaseReader, FleetReader, Rule
from citywatch.rules.events import AlertFanOut
from citywatch.rules.patrols.grids import Grids
from citywatch.rules.registry import RULES, RuleContext
from citywatch.sink import FanOut, Sink

log = logging.getLogger(__name__)

COMPONENTS = ("collector", "rules", "api")


class Service:
    """The components of citywatch, as one async context manager."""

    def __init__(
        self,
        settings: Settings,
        components: Iterable[str] = COMPONENTS,
        registry: CollectorRegistry | None = None,
        extra_sinks: Sequence[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.components = set(components)
        unknown = self.components - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown component(s): {', '.join(sorted(unknown))}")
        self.registry = registry or CollectorRegistry()
        self.extra_sinks = tuple(extra_sinks)
        self.clock: Clock = clock or SystemClock()
        self.checks: dict[str, ReadyCheck] = {}
        self._stack = contextlib.AsyncExitStack()
        self.writer: InfluxWriter | None = None
        self.source: MqttSource | None = None
        self.collector: Collector | None = None
        self.publisher: MqttPublisher | None = None
        self.refused: DeadLetters | None = None
        self.rules: dict[str, Rule] = {}
        self._rule_context: RuleContext | None = None
        self.alerting: Alerting | None = None
        self.push: MqttPush | None = None
        self.http_port: int | None = None
        self.hub = Hub(settings.api.stream_backlog, StreamMetrics(self.registry))
        self.board: DeviceBoard | None = None
        self.grids: Grids | None = None
        self.roster: Roster | None = None
        self.admission: Admission | None = None

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
        ingest, rules = "collector" in self.components, "rules" in self.components
        if ingest or rules:
            self.roster = start_roster(s.devices.roster_file)
            # The writer stores ingest (collector) and alert history (rules) alike.
            self.writer = await self._stack.enter_async_context(
                InfluxWriter(
                    s.influx,
                    s.spool,
                    data / "spool",
                    WriterMetrics(self.registry),
                    clock=self.clock,
                )
            )
            # Pushed here so that it runs after the collector stops and before the writer.
            self._stack.push_async_callback(self._close_refused)
            self.checks["storage"] = self.writer.ready
            sinks: list[Sink] = [self.writer] if ingest else []
            # The API's board of handhelds is fed like the rules, and feeds the stream.
            self.board = DeviceBoard(s.patrols, self.hub, self.clock, s.devices.evict_after)
            sinks.append(self.board)
            # Alone, the rules consume with a session of their own (scale-out).
            client_id = s.mqtt.client_id if ingest else f"{s.mqtt.client_id}-rules"
            if rules:
                sinks += await self._start_rules(client_id)
            sinks += self.extra_sinks
            await self._start_collector(client_id, FanOut(*sinks))
            await self._dead_letter_refused()
        await self._start_http()

    async def _dead_letter_refused(self) -> None:
        """Points InfluxDB refuses are dead-lettered (``influx_refused``), like case events."""
        assert self.writer is not None and self.source is not None
        s = self.settings
        self.refused = DeadLetters(
            self.publisher or self.source, self.writer, s.mqtt.topic_root, s.ingest.deadletter_max
        )
        await self.writer.use_rejects(self.refused)

    async def _close_refused(self) -> None:
        if self.refused is not None:
            await self.refused.aclose()

    async def _start_rules(self, client_id: str) -> list[Sink]:
        s = self.settings
        assert self.writer is not None
        self.publisher = await self._stack.enter_async_context(
            MqttPublisher(
                s.mqtt.broker,
                f"{client_id}-out",
                PublisherMetrics(self.registry),
                tls_ca=s.mqtt.tls_ca,
                reconnect_max=s.mqtt.reconnect_max,
            )
        )
        alert_log = LoggingAlertSink(self.writer, AlertEventMetrics(self.registry))
        self.grids = load_grids(s.grids_file)
        # Made before alerting (which refuses acknowledgements to it), closed after the
        # rules stop (the stack unwinds in reverse) and before alerting and the writer.
        dead_letters = DeadLetters(
            self.publisher, self.writer, s.mqtt.topic_root, s.ingest.deadletter_max
        )
        alerting = await self._start_alerting(client_id, dead_letters)
        self._stack.push_async_callback(alert_log.aclose)
        self._stack.push_async_callback(dead_letters.aclose)
        ctx = self._rule_context = RuleContext(
            cases=s.cases,
            calendar=s.calendar,
            alerts=AlertFanOut(alert_log, alerting),
            rejects=dead_letters,
            registry=self.registry,
            clock=self.clock,
            data_dir=s.data_path,
            store=self.writer,
            patrols=s.patrols,
            grids=self.grids,
            topic_root=s.mqtt.topic_root,
        )
        out: list[Sink] = []
        for name, factory in RULES.items():
            rule = await self._stack.enter_async_context(factory(ctx))
            self.rules[name] = rule
            out.append(rule)
        self.checks["state"] = self._state_ready
        # After the rules: acknowledgements from handhelds reach alerting as records.
        out.append(alerting)
        return out

    async def _start_alerting(self, client_id: str, rejects: DeadLetters) -> Alerting:
        """Alerting, entered before the rules so that it outlives them at shutdown."""
        s = self.settings
        self.push = await self._stack.enter_async_context(
            MqttPush(
                s.mqtt.broker,
                f"{client_id}-alerts",
                s.mqtt.topic_root,
                tls_ca=s.mqtt.tls_ca,
                reconnect_max=s.mqtt.reconnect_max,
            )
        )
        session = await self._stack.enter_async_context(aiohttp.ClientSession())
        channels = Channels(s.alerting, self.push, session)
        self.alerting = await self._stack.enter_async_context(
            Alerting(
                s.alerting,
                s.data_path / "alerts.sqlite",
                channels,
                self.writer,
                AlertingMetrics(self.registry),
                self.clock,
                rejects=rejects,
                topic_root=s.mqtt.topic_root,
            )
        )
        return self.alerting

    async def _start_collector(self, client_id: str, sink: Sink) -> None:
        s = self.settings
        cmetrics = CollectorMetrics(self.registry)
        router = Router(s.mqtt.topic_root, s.mqtt.owntracks_root)
        mqtt_cfg = dataclasses.replace(s.mqtt, client_id=client_id)
        self.source = await self._stack.enter_async_context(
            MqttSource(
                mqtt_cfg,
                router.subscriptions(
                    s.mqtt.cities,
                    s.mqtt.share_group,
                    owntracks=not s.mqtt.cities or s.ingest.owntracks.city in s.mqtt.cities,
                ),
                cmetrics,
            )
        )
        source = self.source
        self.checks["broker"] = lambda: (
            (True, "connected")
            if source.connected
            else (False, f"not connected to {s.mqtt.broker}")
        )
        self.admission = Admission(s.devices, self.roster, self.clock, cmetrics)
        decoder = BatchDecoder(s.ingest, router, cmetrics, admission=self.admission)
        # Entered last so it is stopped first: no new batches while the sinks drain.
        self.collector = await self._stack.enter_async_context(
            Collector(self.source, decoder, sink, cmetrics, batch_max=s.ingest.batch_max)
        )

    def rule_context(self, settings: Settings, grids: Grids | None) -> RuleContext:
        """The rules' context under ``settings``: this service's outputs, new settings."""
        assert self._rule_context is not None, "the rules do not run in this process"
        return dataclasses.replace(
            self._rule_context,
            cases=settings.cases,
            calendar=settings.calendar,
            patrols=settings.patrols,
            grids=grids,
        )

    def _state_ready(self) -> tuple[bool, str]:
        """The state stores (SQLite in data_dir) of the rules and alerting are open."""
        closed = [name for name, rule in self.rules.items() if not rule.ready()[0]]
        if self.alerting is None or not self.alerting.ready()[0]:
            closed.append("alerting")
        if closed:
            return False, f"state store not open: {', '.join(sorted(closed))}"
        return True, f"open in {self.settings.data_dir}"

    def tasks(self) -> list[asyncio.Task[None]]:
        """The background tasks that must run for as long as the service does."""
        out: list[asyncio.Task[None]] = []
        for part in (
            self.writer,
            self.source,
            self.collector,
            self.publisher,
            self.push,
            self.alerting,
            *self.rules.values(),
        ):
            if part is not None:
                out.extend(part.tasks)
        return out

    async def _start_http(self) -> None:
        host, port = self.settings.api.host_port
        parts = ApiParts(
            alerting=self.alerting,
            board=self.board,
            hub=self.hub,
            # The read ports, served by whichever rule implements them.
            cases=next((r for r in self.rules.values() if isinstance(r, CaseReader)), None),
            patrols=next((r for r in self.rules.values() if isinstance(r, FleetReader)), None),
            influx=self.writer.client if self.writer is not None else None,
            grids=lambda: self.grids,
        )
        if self.alerting is not None:
            self.alerting.listeners.append(alert_streamer(self.hub, self.alerting))
        app = make_app(self.registry, self.checks, self.settings.api, parts)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        # Not aiohttp's TCPSite: this one times out slow clients and caps connections.
        site = GuardedSite(runner, host, port)
        await site.start()
        self.http_port = site.port
        log.info("HTTP on %s:%s (console /, API /api/v1, /metrics)", host, self.http_port)
        self._stack.callback(self.hub.close)


def load_grids(path: str) -> Grids | None:
    """The grid cells of ``grids_file``, or None when none is configured."""
    if not path:
        log.warning("no grids_file configured: out-of-grid and coverage are off")
        return None
    try:
        return Grids.load(path)
    except ValueError as exc:
        raise ConfigError("grids_file", str(exc)) from None


def start_roster(path: str) -> Roster | None:
    """The roster of ``devices.roster_file`` at start-up, saying whether shift claims are
    checked against one."""
    roster = load_roster(path)
    if roster is None:
        log.warning(
            "no devices.roster_file: shift starts are trusted as sent, the lead (who is told "
            "of the officer's alerts) and the device included"
        )
    else:
        log.info("roster %s: %d officers, %d handhelds", path, len(roster), len(roster.devices))
    return roster
