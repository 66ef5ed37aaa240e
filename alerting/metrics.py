"""Alerting's Prometheus metrics: alerts by state, notifications by channel, delivery delay."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citywatch.metrics import MetricSet

StateCounts = Callable[[], Mapping[tuple[str, str, str], int]]


class _AlertsByState(Collector):
    def __init__(self, counts: StateCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        g = GaugeMetricFamily(
            "citywatch_alerts",
            "Open alerts by rule, severity and state (firing, acknowledged, silenced)",
            labels=["rule", "severity", "state"],
        )
        for (rule, severity, state), n in sorted(self.counts().items()):
            g.add_metric([rule, severity, state], n)
        yield g


class AlertingMetrics(MetricSet):
    """Counters and histograms of the alerting layer; registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.changes = self.counter(
            "citywatch_alert_changes",
            "Alert lifecycle changes: opened, reopened, acknowledged, escalated, resolved",
            ["rule", "severity", "change"],
        )
        self.sent = self.counter(
            "citywatch_notifications_sent",
            "Notifications delivered, by channel: mqtt, grafana, or the webhook kind",
            ["channel"],
        )
        self.failed = self.counter(
            "citywatch_notifications_failed",
            "Notifications given up (refused, or too old), by channel",
            ["channel"],
        )
        self.retried = self.counter(
            "citywatch_notifications_retried",
            "Notification attempts that failed and will be tried again, by channel",
            ["channel"],
        )
        self.outbox = self.gauge(
            "citywatch_notifications_pending", "Notifications waiting in the outbox"
        )
        self.delay = self.histogram(
            "citywatch_alert_delivery_delay_seconds",
            "From a rule's event opening an alert to its first delivered notification",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def by_state(self, counts: StateCounts) -> None:
        """Export open alerts by state, counted by ``counts`` at each scrape."""
        self.registry.register(_AlertsByState(counts))
