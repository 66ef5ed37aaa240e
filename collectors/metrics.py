"""The collector's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from citywatch.metrics import BulkHistogram

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class CollectorMetrics:
    """Messages received, accepted and rejected, ingest lag, and the broker link."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "citywatch_ingest_received", "Messages received, by kind", ["kind"], registry=registry
        )
        self.accepted = Counter(
            "citywatch_ingest_accepted",
            "Records accepted (each fix of a batch counts), by kind",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "citywatch_ingest_rejected",
            "Messages or batch elements rejected, by kind and reason",
            ["kind", "reason"],
            registry=registry,
        )
        self.unknown_devices = Gauge(
            "citywatch_ingest_unknown_devices",
            "Handhelds neither in the roster nor named by a current shift whose data is taken "
            "(bounded by devices.max_unknown and devices.max_unknown_total)",
            registry=registry,
        )
        self.deadletters_suppressed = Counter(
            "citywatch_ingest_deadletters_suppressed",
            "Rejections neither published as dead letters nor stored, beyond "
            "devices.unknown_deadletters a minute (still counted in citywatch_ingest_rejected)",
            ["reason"],
            registry=registry,
        )
        self.lag = BulkHistogram(
            "citywatch_ingest_lag_seconds",
            "Receive time minus the fix's own time",
            LAG_BUCKETS,
            registry,
        )
        self.unacked = Gauge(
            "citywatch_ingest_unacked",
            "Messages received and not yet acknowledged",
            registry=registry,
        )
        self.connected = Gauge(
            "citywatch_mqtt_connected", "1 while connected to the broker", registry=registry
        )
        self.reconnects = Counter(
            "citywatch_mqtt_reconnects",
            "Connections made to the broker after the first",
            registry=registry,
        )
        self.sink_errors = Counter(
            "citywatch_ingest_sink_errors",
            "Failed attempts to store a batch (storage unavailable: retried until stored)",
            registry=registry,
        )
        self.sink_given_up = Counter(
            "citywatch_ingest_sink_given_up",
            "Records acknowledged without being stored because the sink failed on them "
            "repeatedly (a bug, not an outage)",
            registry=registry,
        )
        self.stale_acks = Counter(
            "citywatch_ingest_stale_acks",
            "Acknowledgements skipped because the connection they belonged to is gone "
            "(the broker redelivers those messages)",
            registry=registry,
        )
