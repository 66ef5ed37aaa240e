"""URL redaction, secret scrubbing, UTF-8 safe truncation and the Chinese message fields."""

from __future__ import annotations

import pytest

from citywatch.alerting.notifiers._http import (
    Redactor,
    fields,
    fit,
    redact_url,
    rfc3339,
    truncate_utf8,
    url_secrets,
)
from citywatch.durations import duration_zh
from tests.alerting.notifiers.alerts import T0, alert, resolved


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
        ),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=c0ffee12&timestamp=1&sign=a%2Bb",
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=***",
        ),
        (
            "https://open.feishu.cn/open-apis/bot/v2/hook/d7b3c2a1-5e6f-4a8b",
            "https://open.feishu.cn/open-apis/bot/v2/hook/***",
        ),
        (
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/***/B00000000/***",
        ),
        ("https://u:p4ss@am.local:9093/api/v2/alerts", "https://***@am.local:9093/api/v2/alerts"),
        ("http://grafana:3000/api/annotations", "http://grafana:3000/api/annotations"),
        ("http://[::1]:8080/x/3f2a9c1d8e7b6a5f4e3d?y=1#frag", "http://[::1]:8080/x/***?y=***"),
        ("http://h:notaport/x", "***invalid URL***"),
    ],
)
def test_redact_url_keeps_host_and_path_prefix(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets_and_scrub() -> None:
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/d7b3c2a1-5e6f-4a8b?k=topsecret"
    assert set(url_secrets(url)) == {"d7b3c2a1-5e6f-4a8b", "topsecret"}
    r = Redactor([*url_secrets(url), "SECxyz123", None, "1"])
    text = f"failed {url} with SECxyz123 and 1 retry"
    assert r.scrub(text) == (
        "failed https://open.feishu.cn/open-apis/bot/v2/hook/***?k=*** with *** and 1 retry"
    )


def test_truncate_utf8_never_splits_a_character() -> None:
    text = "城管告警🚨 a红灯é" * 40
    for limit in range(len(text.encode()) + 2):
        cut = truncate_utf8(text, limit)
        raw = cut.encode("utf-8")  # a split character would not have survived decoding
        assert len(raw) <= limit
        assert raw.decode("utf-8", "strict") == cut
        if len(text.encode()) > limit >= 3:
            assert cut.endswith("…")
            assert text.startswith(cut[:-1])
    assert truncate_utf8("短", 100) == "短"


def test_fit_shows_whole_blocks_and_counts_the_rest() -> None:
    blocks = [f"第 {i} 条：" + "网格巡查" * 20 for i in range(10)]
    text = fit("### 标题", blocks, "<at id=all></at>", 1000)
    assert len(text.encode()) <= 1000
    shown = sum(b in text for b in blocks)
    assert 0 < shown < 10
    assert f"……另有 {10 - shown} 条未列出" in text
    assert text.startswith("### 标题") and text.endswith("<at id=all></at>")
    assert fit("h", blocks[:2], "", 10_000) == "\n\n".join(["h", *blocks[:2]])


def test_fit_cuts_a_single_huge_block() -> None:
    text = fit("### 标题", ["巡" * 5000, "b"], "尾", 4096)
    assert len(text.encode()) <= 4096
    assert text.startswith("### 标题\n\n巡巡") and "……另有 1 条未列出" in text
    assert text.endswith("尾")


def test_fields_of_open_and_resolved_alerts() -> None:
    rows = dict(fields(alert()))
    assert rows["状态"] == "告警"
    assert rows["开始"] == "05-09 15:30，已持续 12 分钟"
    assert rows["网格"] == "321202001002017" and rows["队员"] == "off-7"
    assert rows["升级"] == "首次通知" and rows["编号"] == "n-0001"
    rows = dict(fields(resolved(escalation=2)))
    assert rows["状态"] == "已恢复"
    assert rows["时间"] == "05-09 15:30 至 05-09 15:55"
    assert rows["历时"] == "25 分钟"
    assert rows["升级"] == "第 2 级"
    assert dict(fields(alert(status="acknowledged")))["状态"] == "已确认"
    assert dict(fields(alert(subject_kind="case", subject_id="C1")))["案件"] == "C1"


def test_span_and_rfc3339() -> None:
    assert [duration_zh(s) for s in (30, 600, 3900, 90000)] == [
        "不到 1 分钟",
        "10 分钟",
        "1 小时 5 分",
        "1 天 1 小时",
    ]
    assert rfc3339(T0 + 0.25) == "2026-05-09T07:30:00.250Z"
