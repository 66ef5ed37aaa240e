"""The patrol rules' Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from citywatch.metrics import MetricSet
from citywatch.rules.patrols.specs import STATE_NAMES


class PatrolMetrics(MetricSet):
    """Officers by patrol state, coverage, and how quickly a condition becomes an alert."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.officers = self.gauge(
            "citywatch_patrol_officers",
            f"Officers on shift by patrol state: {', '.join(STATE_NAMES)}",
            ["state"],
        )
        # Per city, not per officer: a series per officer would not scale to a city's
        # fleet; per-officer coverage is in InfluxDB (patrol_coverage).
        self.coverage = self.gauge(
            "citywatch_patrol_coverage_ratio",
            "Mean share of their assigned cells that officers on shift have visited",
            ["city"],
        )
        self.distance = self.gauge(
            "citywatch_patrol_distance_meters",
            "Mean distance walked this shift by officers on shift",
            ["city"],
        )
        self.delay = self.histogram(
            "citywatch_patrol_alert_delay_seconds",
            "From receiving the observation that made a condition true to its alert event",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
