"""WeCom, DingTalk and Feishu robots against a server that checks them as the vendor does."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from citywatch.alerting.notifiers import dingtalk, feishu
from citywatch.alerting.notifiers.base import NotifyError
from citywatch.alerting.notifiers.config import WebhookConfig
from citywatch.alerting.notifiers.dingtalk import DingTalkNotifier
from citywatch.alerting.notifiers.feishu import FeishuNotifier
from citywatch.alerting.notifiers.registry import NOTIFIERS
from citywatch.alerting.notifiers.wecom import WeComNotifier
from tests.alerting.notifiers.alerts import alert, resolved
from tests.alerting.notifiers.fake_vendors import (
    DINGTALK_SECRET,
    FEISHU_SECRET,
    SECRETS,
    FakeVendors,
    dingtalk_sign,
    feishu_sign,
)


def config(vendors: FakeVendors, kind: str, **kw: Any) -> Any:
    settings: type[WebhookConfig] | None = NOTIFIERS[kind].config
    assert settings is not None
    return settings(kind=kind, url=vendors.url(kind), **kw)


async def test_wecom_markdown_batch(vendors: FakeVendors, session: aiohttp.ClientSession) -> None:
    cfg = config(vendors, "wecom", external_url="https://cw.example.cn/alerts/{alert_id}")
    batch = [alert(), alert(id="n-3", severity="critical", status="acknowledged"), resolved()]
    await WeComNotifier(cfg, session).notify(batch)
    (body,) = vendors.accepted["wecom"]
    content = body["markdown"]["content"]
    assert content.startswith("### 🚨 紧急 城管告警 3 条")
    for word in ("🔴 红灯", "告警", "已确认", "已恢复", "网格：", "321202001002017", "off-7"):
        assert word in content
    assert "n-0001" in content and "n-3" in content and "n-0002" in content
    assert "[查看详情](https://cw.example.cn/alerts/42)" in content
    assert '<font color="info">' in content  # the resolved one is green


async def test_wecom_long_batch_is_cut_to_4096_bytes(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    batch = [alert(id=f"n-{i}", summary="队员长时间静止" * 30) for i in range(30)]
    await WeComNotifier(config(vendors, "wecom"), session).notify(batch)
    content = vendors.accepted["wecom"][0]["markdown"]["content"]
    assert len(content.encode()) <= 4096  # the fake server also refuses more, as WeCom does
    assert "条未列出" in content


async def test_wecom_single_huge_alert_is_cut_on_a_character(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    await WeComNotifier(config(vendors, "wecom"), session).notify([alert(summary="巡🚨" * 3000)])
    content = vendors.accepted["wecom"][0]["markdown"]["content"]
    assert 4000 < len(content.encode()) <= 4096
    assert "\ufffd" not in content


async def test_dingtalk_signed_markdown(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    vendors.dingtalk_signed = True
    cfg = config(vendors, "dingtalk", secret=DINGTALK_SECRET)
    await DingTalkNotifier(cfg, session).notify([alert(severity="critical")])
    (body,) = vendors.accepted["dingtalk"]
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"].startswith("🚨 紧急 告警：队员 off-7")
    assert "- 编号：n-0001" in body["markdown"]["text"]
    assert body["at"]["isAtAll"] is True


async def test_dingtalk_at_all_only_for_open_configured_severities(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    notifier = DingTalkNotifier(config(vendors, "dingtalk", mention_all_on=("red",)), session)
    await notifier.notify([alert(severity="yellow")])
    await notifier.notify([resolved(severity="red")])
    await notifier.notify([alert(severity="yellow"), alert(severity="red")])
    assert [b["at"]["isAtAll"] for b in vendors.accepted["dingtalk"]] == [False, False, True]


def test_dingtalk_sign_matches_the_vendor_recipe() -> None:
    ts = 1778311800123
    url = dingtalk.signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SECx", ts)
    query = parse_qs(urlsplit(url).query)  # decodes as the vendor's server does
    assert query["timestamp"] == [str(ts)]
    assert query["sign"] == [dingtalk_sign("SECx", str(ts))]


async def test_dingtalk_wrong_secret_is_refused_not_retried(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    vendors.dingtalk_signed = True
    cfg = config(vendors, "dingtalk", secret="SECwrong0000000")
    with pytest.raises(NotifyError) as info:
        await DingTalkNotifier(cfg, session).notify([alert()])
    assert not info.value.retryable
    assert "310000" in str(info.value) and "sign not match" in str(info.value)
    assert "SECwrong0000000" not in str(info.value)


async def test_dingtalk_unsigned_robot_with_signing_on_is_refused(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    vendors.dingtalk_signed = True
    with pytest.raises(NotifyError) as info:
        await DingTalkNotifier(config(vendors, "dingtalk"), session).notify([alert()])
    assert not info.value.retryable and "310000" in str(info.value)


async def test_dingtalk_old_timestamp_is_refused(
    vendors: FakeVendors, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendors.dingtalk_signed = True
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3700)
    cfg = config(vendors, "dingtalk", secret=DINGTALK_SECRET)
    with pytest.raises(NotifyError) as info:
        await DingTalkNotifier(cfg, session).notify([alert()])
    assert "timestamp invalid" in str(info.value) and not info.value.retryable


async def test_feishu_signed_card(vendors: FakeVendors, session: aiohttp.ClientSession) -> None:
    vendors.feishu_signed = True
    cfg = config(vendors, "feishu", secret=FEISHU_SECRET)
    await FeishuNotifier(cfg, session).notify([alert(severity="critical"), resolved()])
    (body,) = vendors.accepted["feishu"]
    assert body["timestamp"].isdigit() and abs(int(body["timestamp"]) - time.time()) < 60
    assert body["sign"] == feishu_sign(FEISHU_SECRET, body["timestamp"])
    card = body["card"]
    assert card["header"]["template"] == "carmine"
    assert card["header"]["title"]["content"] == "🚨 紧急 城管告警 2 条"
    text = card["elements"][0]["content"]
    assert "已恢复" in text and "编号：n-0002" in text
    assert text.endswith("<at id=all></at>")


def test_feishu_sign_matches_the_vendor_recipe() -> None:
    # The string to sign is the HMAC key and the message is empty, unlike DingTalk.
    assert feishu.sign("s3cret", 1599360473) == feishu_sign("s3cret", "1599360473")
    assert feishu.sign("s3cret", 1599360473) != dingtalk_sign("s3cret", "1599360473")


async def test_feishu_resolved_card_is_green_without_mention(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    await FeishuNotifier(config(vendors, "feishu"), session).notify([resolved(severity="critical")])
    card = vendors.accepted["feishu"][0]["card"]
    assert card["header"]["template"] == "green"
    assert "<at id=all>" not in card["elements"][0]["content"]
    assert "sign" not in vendors.accepted["feishu"][0]


async def test_feishu_wrong_secret_and_stale_timestamp_are_refused(
    vendors: FakeVendors, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendors.feishu_signed = True
    with pytest.raises(NotifyError) as info:
        await FeishuNotifier(config(vendors, "feishu", secret="other-secret"), session).notify(
            [alert()]
        )
    assert "19021" in str(info.value) and not info.value.retryable
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3700)
    with pytest.raises(NotifyError) as info:
        await FeishuNotifier(config(vendors, "feishu", secret=FEISHU_SECRET), session).notify(
            [alert()]
        )
    assert "19021" in str(info.value) and FEISHU_SECRET not in str(info.value)


async def test_feishu_legacy_status_code_answer(
    vendors: FakeVendors, session: aiohttp.ClientSession
) -> None:
    vendors.mode = "legacy"
    await FeishuNotifier(config(vendors, "feishu"), session).notify([alert()])
    assert len(vendors.accepted["feishu"]) == 1


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [
        ("wecom", 45009, True),
        ("wecom", 93000, False),
        ("wecom", 40058, False),
        ("dingtalk", 130101, True),
        ("dingtalk", 300001, False),
        ("dingtalk", 310000, False),
        ("feishu", 11232, True),
        ("feishu", 19001, False),
        ("feishu", 9499, False),
    ],
)
async def test_vendor_error_codes(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str, code: int, retryable: bool
) -> None:
    vendors.mode = f"errcode:{code}"
    notifier: dict[str, Any] = {
        "wecom": WeComNotifier,
        "dingtalk": DingTalkNotifier,
        "feishu": FeishuNotifier,
    }
    with pytest.raises(NotifyError) as info:
        await notifier[kind](config(vendors, kind), session).notify([alert()])
    assert info.value.retryable is retryable
    assert str(code) in str(info.value) and kind in str(info.value)


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu"])
async def test_error_echoing_the_url_shows_no_token(
    vendors: FakeVendors, session: aiohttp.ClientSession, kind: str
) -> None:
    vendors.mode = "echo-url"  # the answer quotes the request URL, token and all
    notifier: dict[str, Any] = {
        "wecom": WeComNotifier,
        "dingtalk": DingTalkNotifier,
        "feishu": FeishuNotifier,
    }
    secret = {"dingtalk": DINGTALK_SECRET, "feishu": FEISHU_SECRET}.get(kind)
    with pytest.raises(NotifyError) as info:
        await notifier[kind](config(vendors, kind, secret=secret), session).notify([alert()])
    message = str(info.value)
    assert "invalid webhook url" in message and "***" in message
    assert not [s for s in SECRETS if s in message]
