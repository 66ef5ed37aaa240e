"""Alerting with real webhook and Grafana notifiers against the fake vendor server.

The retries live in the outbox: a receiver that is down for a while gets
exactly the pending notifications once it is back; a refusal is not retried.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.service import Alerting
from citywatch.clock import SystemClock
from citywatch.config import load_section
from citywatch.models import AlertEvent
from tests.alerting.notifiers.fake_vendors import (
    DINGTALK_SECRET,
    FEISHU_SECRET,
    GRAFANA_TOKEN,
    FakeVendors,
)
from tests.alerting.standalone import standalone
from tests.helpers import await_until


def overdue(case: str, status: str = "firing") -> AlertEvent:
    return AlertEvent(
        rule="case_overdue",
        status=status,
        severity="red",
        city="321200",
        subject_kind="case",
        subject=case,
        at=time.time() - 60,
        labels={"step": "disposal", "grid": "321202001001001", "unit": "unit-roads"},
        values={"deadline": time.time() - 60, "elapsed": 28860.0, "limit": 28800.0},
    )


@contextlib.asynccontextmanager
async def alerting_for(
    vendors: FakeVendors, tmp_path: Path, hooks: list[dict[str, Any]], grafana: bool = False
) -> AsyncIterator[Alerting]:
    raw: dict[str, Any] = {
        "receivers": {"duty": {"mqtt": False, "webhooks": hooks}},
        "delivery": {"backoff_initial": "50ms", "backoff_max": "200ms"},
        "repeat_interval": "0s",
    }
    if grafana:
        raw["grafana"] = {"url": vendors.url("grafana"), "token": GRAFANA_TOKEN}
    cfg = load_section(AlertingConfig, raw, "alerting")
    async with aiohttp.ClientSession() as session:
        alerting = standalone(cfg, tmp_path, None, session, SystemClock())
        async with alerting:
            yield alerting


def sample(alerting: Alerting, name: str, channel: str) -> float:
    return alerting.metrics.registry.get_sample_value(name, {"channel": channel}) or 0.0


async def test_every_robot_and_grafana_hear_of_firing_and_resolution(
    vendors: FakeVendors, tmp_path: Path
) -> None:
    vendors.dingtalk_signed = vendors.feishu_signed = True
    hooks = [
        {"kind": "dingtalk", "url": vendors.url("dingtalk"), "secret": DINGTALK_SECRET},
        {"kind": "wecom", "url": vendors.url("wecom")},
        {"kind": "feishu", "url": vendors.url("feishu"), "secret": FEISHU_SECRET},
        {"kind": "alertmanager", "url": vendors.url("alertmanager")},
    ]
    async with alerting_for(vendors, tmp_path, hooks, grafana=True) as alerting:
        await alerting.emit([overdue("C1")])
        robots = ("dingtalk", "wecom", "feishu", "alertmanager")
        await await_until(
            lambda: all(len(vendors.accepted.get(v, [])) == 1 for v in (*robots, "grafana")),
            what="firing everywhere",
        )
        wecom = vendors.accepted["wecom"][0]["markdown"]["content"]
        assert "红灯" in wecom and "C1" in wecom and "处置超时" in wecom
        await alerting.emit([overdue("C1", "resolved")])
        await await_until(
            lambda: all(len(vendors.accepted.get(v, [])) == 2 for v in (*robots, "grafana")),
            what="resolved everywhere",
        )
        am = vendors.accepted["alertmanager"][1]
        assert am["status"] == "resolved" and am["alerts"][0]["annotations"]["id"].endswith(
            "resolve0-duty"
        )
        region = vendors.accepted["grafana"][1]
        assert region["timeEnd"] > region["time"]


async def test_a_receiver_down_for_a_while_gets_exactly_the_pending_ones(
    vendors: FakeVendors, tmp_path: Path
) -> None:
    hooks = [{"kind": "alertmanager", "url": vendors.url("alertmanager")}]
    async with alerting_for(vendors, tmp_path, hooks) as alerting:
        vendors.mode = "status:503"
        for case in ("C1", "C2", "C3"):
            await alerting.emit([overdue(case)])
        await await_until(
            lambda: sample(alerting, "citywatch_notifications_retried_total", "alertmanager") >= 3,
            what="retries while down",
        )
        assert vendors.accepted.get("alertmanager", []) == []
        vendors.mode = "ok"
        await await_until(lambda: alerting.outbox.pending() == 0, what="outbox drained")
        ids = [
            a["annotations"]["id"]
            for doc in vendors.accepted["alertmanager"]
            for a in doc["alerts"]
        ]
        e = alerting.store.epoch
        assert sorted(ids) == [f"{e}-1-1-fire0-duty", f"{e}-2-1-fire0-duty", f"{e}-3-1-fire0-duty"]
        assert sample(alerting, "citywatch_notifications_failed_total", "alertmanager") == 0


async def test_a_refusal_is_not_retried_and_later_alerts_still_go(
    vendors: FakeVendors, tmp_path: Path
) -> None:
    hooks = [{"kind": "wecom", "url": vendors.url("wecom")}]
    async with alerting_for(vendors, tmp_path, hooks) as alerting:
        vendors.mode = "errcode:93000"  # invalid webhook URL: retrying cannot help
        await alerting.emit([overdue("C1")])
        await await_until(
            lambda: sample(alerting, "citywatch_notifications_failed_total", "wecom") == 1,
            what="refused",
        )
        assert sample(alerting, "citywatch_notifications_retried_total", "wecom") == 0
        vendors.mode = "ok"
        await alerting.emit([overdue("C2")])
        await await_until(lambda: len(vendors.accepted.get("wecom", [])) == 1, what="next one")
        assert "C2" in vendors.accepted["wecom"][0]["markdown"]["content"]
