"""The patrol rules' Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram


class PatrolMetrics:
    """Officers by patrol state, coverage, and how quickly a condition becomes an alert."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.officers = Gauge(
            "citywatch_patrol_officers",
            "Officers on shift by patrol state: patrolling, idle, out_of_grid, gps_lost, "
            "offline, on_break",
            ["state"],
            registry=registry,
        )
        self.coverage = Gauge(
            "citywatch_patrol_coverage_ratio",
            "Share of the officer's assigned cells visited this shift",
            ["city", "officer"],
            registry=registry,
        )
        self.distance = Gauge(
            "citywatch_patrol_distance_meters",
            "Distance walked this shift",
            ["city", "officer"],
            registry=registry,
        )
        self.delay = Histogram(
            "citywatch_patrol_alert_delay_seconds",
            "From receiving the observation that made a condition true to its alert event",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
