"""The rules' event log, beside alerting: every alert event is logged, counted and stored.

The service hands each batch of events to this log and to alerting
(:class:`rules.events.AlertFanOut`); the events are written to InfluxDB as the
measurement ``alert_event``, which the Grafana dashboards read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from citywatch.metrics import MetricSet
from citywatch.models import AlertEvent
from citywatch.sink import Sink

log = logging.getLogger("citywatch.alerts")


class AlertEventMetrics(MetricSet):
    """Alert events emitted by the rules."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events = self.counter(
            "citywatch_rule_alert_events",
            "Alert events emitted by the rules, by rule and status (firing, resolved)",
            ["rule", "status"],
        )


class LoggingAlertSink:
    """An :class:`rules.events.AlertSink` that logs, counts and writes the events.

    Writing to InfluxDB is not awaited: a rule's timer must not wait for the
    writer's next batch. The writes are kept track of and awaited by ``aclose``.
    """

    def __init__(self, store: Sink | None, metrics: AlertEventMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self._writes: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Wait for the history writes under way."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        for e in events:
            self.metrics.events.labels(e.rule, e.status).inc()
            log.info(
                "%s %s %s %s/%s %s",
                e.rule,
                e.status,
                e.severity,
                e.subject_kind,
                e.subject,
                " ".join(f"{k}={v}" for k, v in sorted(e.labels.items())),
            )
        if self.store is not None and events:
            task = asyncio.create_task(self.store.write(list(events)))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
