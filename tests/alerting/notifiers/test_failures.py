"""Every notifier classifies failures alike: server errors, refusals, no server, no answer."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from citywatch.alerting.notifiers.base import Notifier, NotifyError
from citywatch.alerting.notifiers.dingtalk import DingTalkNotifier
from citywatch.alerting.notifiers.feishu import FeishuNotifier
from citywatch.alerting.notifiers.grafana import GrafanaConfig, GrafanaNotifier
from citywatch.alerting.notifiers.registry import NOTIFIERS
from citywatch.alerting.notifiers.webhook import WebhookNotifier
from citywatch.alerting.notifiers.wecom import WeComNotifier
from tests.alerting.notifiers.alerts import alert
from tests.alerting.notifiers.fake_vendors import (
    AM_BEARER,
    DINGTALK_SECRET,
    FEISHU_SECRET,
    GRAFANA_TOKEN,
    SECRETS,
    FakeVendors,
)

KINDS = ["alertmanager", "wecom", "dingtalk", "feishu", "grafana"]


def make(kind: str, url: str, session: aiohttp.ClientSession, timeout: float = 5.0) -> Notifier:
    """A notifier of ``kind`` at ``url``, every secret it can hold set."""
    if kind == "grafana":
        return GrafanaNotifier(
            GrafanaConfig(url=url, token=GRAFANA_TOKEN, timeout=timeout), session
        )
    secret = {"alertmanager": AM_BEARER, "dingtalk": DINGTALK_SECRET, "feishu": FEISHU_SECRET}
    settings: Any = NOTIFIERS[kind].config
    cfg = settings(kind=kind, url=url, secret=secret.get(kind), timeout=timeout)
    cls: Any = {
        "alertmanager": WebhookNotifier,
        "wecom": WeComNotifier,
        "dingtalk": DingTalkNotifier,
        "feishu": FeishuNotifier,
    }[kind]
    notifier: Notifier = cls(cfg, session)
    return notifier


def assert_no_secret(error: NotifyError) -> None:
    assert not [s for s in SECRETS if s in str(error)], str(error)
    # No chained aiohttp error either: its message may hold the full URL.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize("kind", KINDS)
async def test_success(vendors: FakeVendors, session: aiohttp.ClientSession, kind: str) -> None:
    vendors.dingtalk_signed = vendors.feishu_signed = True
    vendors.am_bearer = AM_BEARER
    await make(kind, vendors.url(kind), session).notify([alert()])
    assert len(vendors.accepted[kind]) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (403, False), (404, False)],
)
async def test_http_status(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str, status: int, retryable: bool
) -> None:
    vendors.mode = f"status:{status}"
    with pytest.raises(NotifyError) as info:
        await make(kind, vendors.url(kind), session).notify([alert()])
    assert info.value.retryable is retryable
    assert f"HTTP {status}" in str(info.value)
    assert_no_secret(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_refused_is_retryable(
    vendors: FakeVendors, dead_base: str, session: aiohttp.ClientSession, kind: str
) -> None:
    url = vendors.url(kind).replace(vendors.base, dead_base)
    with pytest.raises(NotifyError) as info:
        await make(kind, url, session).notify([alert()])
    assert info.value.retryable
    assert "ClientConnectorError" in str(info.value)
    assert dead_base.removeprefix("http://") in str(info.value)
    assert_no_secret(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_slow_server_times_out_retryable(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str
) -> None:
    vendors.mode = "slow"
    with pytest.raises(NotifyError) as info:
        await make(kind, vendors.url(kind), session, timeout=0.3).notify([alert()])
    assert vendors.arrived.is_set()  # it reached the server, which never answered
    assert info.value.retryable and "no answer within 0.3s" in str(info.value)
    assert_no_secret(info.value)


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu"])
async def test_robot_answer_that_is_not_json_is_a_refusal(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str
) -> None:
    # A 200 from something that is not the robot (a captive portal, a wrong path).
    notifier = make(kind, f"{vendors.base}/portal", session)
    with pytest.raises(NotifyError) as info:
        await notifier.notify([alert()])
    assert not info.value.retryable and "not a robot answer" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_callers_session_stays_open(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str
) -> None:
    vendors.dingtalk_signed = vendors.feishu_signed = True
    notifier = make(kind, vendors.url(kind), session)
    vendors.mode = "status:503"
    with pytest.raises(NotifyError):
        await notifier.notify([alert()])
    vendors.mode = "ok"
    await notifier.notify([alert()])  # the same notifier and session, after a failure
    assert not session.closed and len(vendors.accepted[kind]) == 1
