"""Until alerting runs: alert events are logged, counted and stored in InfluxDB."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from citywatch.models import AlertEvent
from citywatch.sink import Sink

log = logging.getLogger("citywatch.alerts")


class AlertEventMetrics:
    """Alert events emitted by the rules."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "citywatch_rule_alert_events",
            "Alert events emitted by the rules, by rule and status (firing, resolved)",
            ["rule", "status"],
            registry=registry,
        )


class LoggingAlertSink:
    """An :class:`rules.events.AlertSink` that logs, counts and writes the events."""

    def __init__(self, store: Sink | None, metrics: AlertEventMetrics) -> None:
        self.store = store
        self.metrics = metrics

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
            await self.store.write(events)
