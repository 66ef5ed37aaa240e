"""The collector's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from citywatch.metrics import BulkHistogram, MetricSet

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class CollectorMetrics(MetricSet):
    """Messages received, accepted and rejected, ingest lag, and the broker link."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.received = self.counter(
            "citywatch_ingest_received", "Messages received, by kind", ["kind"]
        )
        self.accepted = self.counter(
            "citywatch_ingest_accepted",
            "Records accepted (each fix of a batch counts), by kind",
            ["kind"],
        )
        self.rejected = self.counter(
            "citywatch_ingest_rejected",
            "Messages or batch elements rejected, by kind and reason",
            ["kind", "reason"],
        )
        self.unknown_devices = self.gauge(
            "citywatch_ingest_unknown_devices",
            "Handhelds neither in the roster nor named by a current shift whose data is taken "
            "(bounded by devices.max_unknown and devices.max_unknown_total)",
        )
        self.deadletters_suppressed = self.counter(
            "citywatch_ingest_deadletters_suppressed",
            "Rejections neither published as dead letters nor stored, beyond "
            "devices.unknown_deadletters a minute (still counted in citywatch_ingest_rejected)",
            ["reason"],
        )
        self.lag = BulkHistogram(
            "citywatch_ingest_lag_seconds",
            "Receive time minus the fix's own time",
            LAG_BUCKETS,
            registry,
        )
        self.unacked = self.gauge(
            "citywatch_ingest_unacked", "Messages received and not yet acknowledged"
        )
        self.connected = self.gauge("citywatch_mqtt_connected", "1 while connected to the broker")
        self.reconnects = self.counter(
            "citywatch_mqtt_reconnects", "Connections made to the broker after the first"
        )
        self.sink_errors = self.counter(
            "citywatch_ingest_sink_errors",
            "Failed attempts to store a batch (storage unavailable: retried until stored)",
        )
        self.sink_given_up = self.counter(
            "citywatch_ingest_sink_given_up",
            "Records acknowledged without being stored because the sink failed on them "
            "repeatedly (a bug, not an outage)",
        )
        self.stale_acks = self.counter(
            "citywatch_ingest_stale_acks",
            "Acknowledgements skipped because the connection they belonged to is gone "
            "(the broker redelivers those messages)",
        )
