"""The writer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from citywatch.metrics import MetricSet


class WriterMetrics(MetricSet):
    """Batches and points by outcome, write latency, spool depth."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.batches = self.counter(
            "citywatch_write_batches",
            "Batches by outcome: written (straight to InfluxDB), spooled, replayed, dropped "
            "(holding points InfluxDB refused), corrupt (a spool file that is not line protocol)",
            ["outcome"],
        )
        self.points = self.counter(
            "citywatch_write_points",
            "Points by outcome: written, spooled, replayed, dropped (refused by InfluxDB, "
            "dead-lettered), unencodable (a record that could not be turned into line protocol)",
            ["outcome"],
        )
        self.refused = self.counter(
            "citywatch_write_refused_points",
            "Points InfluxDB refused, dead-lettered with reason influx_refused, by InfluxDB's "
            "reason: max_values_per_tag, max_series_per_database, field_type_conflict, "
            "beyond_retention, unparsable, too_large, other",
            ["reason"],
        )
        self.latency = self.histogram(
            "citywatch_write_latency_seconds",
            "Time of one successful write request to InfluxDB",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.failures = self.counter(
            "citywatch_write_failures",
            "Failed write requests, by whether they are retried",
            ["retryable"],
        )
        self.spool_segments = self.gauge("citywatch_spool_segments", "Batches waiting in the spool")
        self.spool_bytes = self.gauge("citywatch_spool_bytes", "Bytes in the spool")
        self.spool_full = self.counter(
            "citywatch_spool_full",
            "Batches the spool could not take (full or disk error); the broker keeps them",
        )
