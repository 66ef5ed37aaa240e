"""服务 Service health: ingest, storage, spool and alert delivery, from Prometheus."""

from __future__ import annotations

from citywatch.grafana.model import (
    CITY,
    CITY_VAR,
    JSON,
    PROMETHEUS,
    alert_annotations,
    dashboard,
    influx,
    panel,
    prom,
    query_var,
)

UID = "citywatch-service"
SEL = '{instance=~"$instance"}'

INSTANCE_VAR = query_var(
    "instance",
    "实例 instance",
    "label_values(citywatch_ingest_received_total, instance)",
    datasource=PROMETHEUS,
    description="Scraped citywatch processes.",
)


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{SEL}[$__rate_interval]))"


def _quantiles(metric: str) -> list[JSON]:
    return [
        prom(
            ref,
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{SEL}[$__rate_interval])))",
            f"p{int(q * 100)}",
        )
        for ref, q in (("A", 0.5), ("B", 0.99))
    ]


def _row(pid: int, y: int, specs: list[tuple[str, str, list[JSON], str]]) -> list[JSON]:
    w = 24 // len(specs)
    return [
        panel(pid + i, "timeseries", title, desc, (i * w, y, w, 8), targets, unit=unit)
        for i, (title, desc, targets, unit) in enumerate(specs)
    ]


def build() -> JSON:
    """The service-health dashboard."""
    ingest = [
        (
            "接入速率",
            "Messages received and accepted per second, by kind.",
            [
                prom("A", _rate("citywatch_ingest_received_total", "kind"), "received {{kind}}"),
                prom("B", _rate("citywatch_ingest_accepted_total", "kind"), "accepted {{kind}}"),
            ],
            "reqps",
        ),
        (
            "拒收消息 (按原因)",
            "Rejected messages per second by reason (the dead letters).",
            [
                prom(
                    "A",
                    _rate("citywatch_ingest_rejected_total", "kind, reason"),
                    "{{kind}} {{reason}}",
                )
            ],
            "reqps",
        ),
        (
            "接入延迟",
            "Receive time minus the message's own timestamp (p50, p99).",
            _quantiles("citywatch_ingest_lag_seconds"),
            "s",
        ),
    ]
    storage = [
        (
            "写入延迟",
            "InfluxDB write latency per batch (p50, p99).",
            _quantiles("citywatch_write_latency_seconds"),
            "s",
        ),
        (
            "写入点数与失败",
            "Points written per second by outcome; failed writes by retryable.",
            [
                prom("A", _rate("citywatch_write_points_total", "outcome"), "points {{outcome}}"),
                prom(
                    "B",
                    _rate("citywatch_write_failures_total", "retryable"),
                    "failures retryable={{retryable}}",
                ),
            ],
            "short",
        ),
        (
            "缓存积压 (spool)",
            "Batches and bytes waiting in the on-disk spool while InfluxDB is unreachable.",
            [
                prom("A", f"sum(citywatch_spool_segments{SEL})", "segments"),
                prom("B", f"sum(citywatch_spool_bytes{SEL})", "bytes"),
            ],
            "short",
        ),
    ]
    alerts = [
        (
            "告警送达延迟",
            "From an alert's event to its delivery to a receiver (p50, p99).",
            _quantiles("citywatch_alert_delivery_delay_seconds"),
            "s",
        ),
        (
            "通知发送与失败",
            "Notifications sent, failed and retried per second by channel; pending in the outbox.",
            [
                prom(
                    "A", _rate("citywatch_notifications_sent_total", "channel"), "sent {{channel}}"
                ),
                prom(
                    "B",
                    _rate("citywatch_notifications_failed_total", "channel"),
                    "failed {{channel}}",
                ),
                prom(
                    "C",
                    _rate("citywatch_notifications_retried_total", "channel"),
                    "retried {{channel}}",
                ),
                prom("D", f"sum(citywatch_notifications_pending{SEL})", "pending"),
            ],
            "short",
        ),
        (
            "规则告警事件",
            "Alert events of the rules per second, by rule and status; patrol alert delay p99.",
            [
                prom(
                    "A",
                    _rate("citywatch_rule_alert_events_total", "rule, status"),
                    "{{rule}} {{status}}",
                ),
                prom(
                    "B",
                    "histogram_quantile(0.99, sum by (le) (rate("
                    f"citywatch_patrol_alert_delay_seconds_bucket{SEL}[$__rate_interval])))",
                    "patrol delay p99 (s)",
                ),
            ],
            "short",
        ),
    ]
    broker = [
        (
            "MQTT 连接与未确认",
            "1 while connected to the broker; messages received but not yet acknowledged.",
            [
                prom("A", f"min(citywatch_mqtt_connected{SEL})", "connected"),
                prom("B", f"sum(citywatch_ingest_unacked{SEL})", "unacked"),
                prom(
                    "C",
                    f"sum(increase(citywatch_mqtt_reconnects_total{SEL}[$__rate_interval]))",
                    "reconnects",
                ),
            ],
            "short",
        ),
        (
            "拒收消息 (InfluxDB, 按原因)",
            "Rejected messages stored in ingest_rejected, by reason (sum of count).",
            [
                influx(
                    "A",
                    'SELECT sum("count") FROM "ingest_rejected" WHERE $timeFilter '
                    'GROUP BY time($__interval), "reason" fill(none)',
                    alias="$tag_reason",
                )
            ],
            "short",
        ),
    ]
    panels = [
        *_row(1, 0, ingest),
        *_row(4, 8, storage),
        *_row(7, 16, alerts),
        *_row(10, 24, broker),
    ]
    return dashboard(
        UID,
        "服务 Service health",
        "citywatch's own health from its Prometheus metrics: ingest, storage, spool, alerts.",
        panels,
        [INSTANCE_VAR, CITY_VAR],
        alert_annotations(
            'SELECT "subject", "rule", "severity" FROM "alert" '
            f"WHERE {CITY} AND \"change\" = 'opened' AND \"severity\" = 'red' AND $timeFilter",
            "subject",
            "rule,severity",
            "红色告警 (alert opened)",
        ),
        time_from="now-6h",
    )
