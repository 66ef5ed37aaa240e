"""The Alertmanager-shaped webhook and the Grafana annotations, against the local server."""

from __future__ import annotations

import aiohttp
import pytest

from citywatch.alerting.notifiers.base import NotifyError
from citywatch.alerting.notifiers.grafana import GrafanaConfig, GrafanaNotifier
from citywatch.alerting.notifiers.webhook import AlertmanagerConfig, WebhookNotifier, payload
from tests.alerting.notifiers.alerts import T0, alert, resolved
from tests.alerting.notifiers.fake_vendors import AM_BEARER, GRAFANA_TOKEN, FakeVendors


def am_config(vendors: FakeVendors, **kw: object) -> AlertmanagerConfig:
    return AlertmanagerConfig(kind="alertmanager", url=vendors.url("alertmanager"), **kw)  # type: ignore[arg-type]


async def test_alertmanager_payload(vendors: FakeVendors, session: aiohttp.ClientSession) -> None:
    vendors.am_bearer = AM_BEARER
    cfg = am_config(
        vendors, secret=AM_BEARER, external_url="https://cw.example.cn/alerts/{alert_id}"
    )
    batch = [alert(status="acknowledged", details={"idle_s": 720}), resolved(officer=None)]
    await WebhookNotifier(cfg, session).notify(batch)
    (body,) = vendors.accepted["alertmanager"]
    assert body["status"] == "firing"  # acknowledged is still firing in Alertmanager terms
    assert body["receiver"] == "lead-1" and body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"alertname": "patrol_idle", "city": "321200"}
    assert body["groupKey"] == '{}/{receiver="lead-1"}:{alertname="patrol_idle",city="321200"}'
    assert body["externalURL"] == "https://cw.example.cn/alerts/"
    assert "officer" not in body["commonLabels"] and body["commonLabels"]["severity"] == "red"
    first, second = body["alerts"]
    assert first["status"] == "firing"
    assert first["labels"] == {
        "alertname": "patrol_idle",
        "rule": "patrol_idle",
        "severity": "red",
        "city": "321200",
        "grid": "321202001002017",
        "unit": "unit-roads",
        "officer": "off-7",
        "device": "dev-7",
        "subject_kind": "officer",
        "subject_id": "off-7",
        "citywatch_status": "acknowledged",
    }
    assert first["annotations"]["id"] == "n-0001"
    assert first["annotations"]["status"] == "acknowledged"
    assert first["annotations"]["summary"].startswith("队员 off-7")
    assert first["annotations"]["details"] == '{"idle_s": 720}'
    assert first["startsAt"] == "2026-05-09T07:30:00.000Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["generatorURL"] == "https://cw.example.cn/alerts/42"
    assert first["fingerprint"] == "patrol_idle:321200:officer:off-7"
    assert second["status"] == "resolved" and second["endsAt"] == "2026-05-09T07:55:00.000Z"


def test_alertmanager_all_resolved_and_truncated() -> None:
    body = payload([resolved(id=f"r{i}") for i in range(5)], max_alerts=2)
    assert body["status"] == "resolved" and body["truncatedAlerts"] == 3
    assert len(body["alerts"]) == 2 and body["externalURL"] == ""
    assert "id" not in body["commonAnnotations"]  # they differ


async def test_alertmanager_bearer_refused_is_not_retryable(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    vendors.am_bearer = AM_BEARER
    cfg = am_config(vendors, secret="wrong-bearer-123")
    with pytest.raises(NotifyError) as info:
        await WebhookNotifier(cfg, session).notify([alert()])
    assert not info.value.retryable and "HTTP 401" in str(info.value)
    assert "wrong-bearer-123" not in str(info.value)


async def test_empty_batch_sends_nothing(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    await WebhookNotifier(am_config(vendors), session).notify([])
    await GrafanaNotifier(grafana_config(vendors), session).notify([])
    assert not vendors.arrived.is_set()


def grafana_config(vendors: FakeVendors, **kw: object) -> GrafanaConfig:
    return GrafanaConfig(url=vendors.url("grafana"), token=GRAFANA_TOKEN, **kw)  # type: ignore[arg-type]


async def test_grafana_points_and_regions(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    cfg = grafana_config(vendors, dashboard_uid="cw-ops", panel_id=4, tags=("citywatch", "泰州"))
    batch = [
        alert(),
        alert(id="n-esc", escalation=1),
        alert(id="n-ack", status="acknowledged"),
        resolved(),
    ]
    await GrafanaNotifier(cfg, session).notify(batch)
    start, escalated, acked, region = vendors.accepted["grafana"]
    assert start == {
        "time": int(T0 * 1000),
        "tags": [
            "citywatch",
            "泰州",
            "rule:patrol_idle",
            "severity:red",
            "city:321200",
            "status:firing",
        ],
        "text": start["text"],
        "dashboardUID": "cw-ops",
        "panelId": 4,
    }
    assert start["text"].startswith("🔴 红灯 告警：队员 off-7") and "编号：n-0001" in start["text"]
    assert escalated["time"] == int((T0 + 720) * 1000) and "第 1 级" in escalated["text"]
    assert acked["time"] == int((T0 + 720) * 1000) and "已确认" in acked["text"]
    assert (region["time"], region["timeEnd"]) == (int(T0 * 1000), int((T0 + 1500) * 1000))
    assert "status:resolved" in region["tags"] and "历时：25 分钟" in region["text"]


async def test_grafana_org_annotation_and_bad_token(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    await GrafanaNotifier(grafana_config(vendors), session).notify([alert()])
    (body,) = vendors.accepted["grafana"]
    assert "dashboardUID" not in body and "panelId" not in body
    cfg = GrafanaConfig(url=vendors.base + "/", token="glsa_wrongtoken_123")
    with pytest.raises(NotifyError) as info:
        await GrafanaNotifier(cfg, session).notify([alert()])
    assert not info.value.retryable and "HTTP 401" in str(info.value)
    assert "glsa_wrongtoken_123" not in str(info.value)
