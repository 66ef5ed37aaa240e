"""The ``WebhookConfig`` and ``GrafanaConfig`` sections: defaults, conversion, refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from citywatch.alerting.notifiers.grafana import GrafanaConfig
from citywatch.alerting.notifiers.registry import load_webhook
from citywatch.config import ConfigError, load_section

EXAMPLE = """
kind: dingtalk
url: https://oapi.dingtalk.com/robot/send?access_token=abc
secret: SECabc
timeout: 3s
mention_all_on: [red, critical]
external_url: https://citywatch.example.cn/alerts/{alert_id}
"""


def test_webhook_yaml_is_converted() -> None:
    cfg = load_webhook(yaml.safe_load(EXAMPLE), "notifiers.leads")
    assert cfg.kind == "dingtalk"
    assert cfg.timeout == 3.0
    assert cfg.mention_all_on == ("red", "critical")
    assert cfg.secret == "SECabc"
    assert cfg.max_alerts == 0


def test_webhook_defaults() -> None:
    cfg = load_webhook({"kind": "wecom", "url": "https://h/x?key=k"}, "n")
    assert (cfg.timeout, cfg.mention_all_on, cfg.secret, cfg.external_url) == (
        5.0,
        ("critical",),
        None,
        None,
    )


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"kind": "slack"}, "notifiers.leads.kind", "alertmanager, wecom, dingtalk, feishu"),
        ({"kind": None}, "notifiers.leads.kind", "expected a string"),
        ({"url": "ftp://h/x"}, "notifiers.leads.url", "http:// or https://"),
        ({"url": "https:///x"}, "notifiers.leads.url", "no host"),
        ({"url": "http://h:99999/x"}, "notifiers.leads.url", "not a valid URL"),
        ({"url": ""}, "notifiers.leads.url", "must be set"),
        ({"timeout": "0s"}, "notifiers.leads.timeout", "more than 0s"),
        ({"timeout": "soon"}, "notifiers.leads.timeout", "duration"),
        ({"mention_all_on": ["green"]}, "notifiers.leads.mention_all_on[0]", "yellow, red"),
        ({"external_url": "https://h/{officer}"}, "notifiers.leads.external_url", "{officer}"),
        ({"external_url": "javascript:x"}, "notifiers.leads.external_url", "http://"),
        ({"max_alerts": -1}, "notifiers.leads.max_alerts", "negative"),
        ({"secret": ""}, "notifiers.leads.secret", "empty"),
        ({"retries": 3}, "notifiers.leads.retries", "unknown key"),
    ],
)
def test_webhook_refusals_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    raw = {"kind": "feishu", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/t", **changes}
    with pytest.raises(ConfigError) as info:
        load_webhook(raw, "notifiers.leads")
    assert info.value.key == key
    assert words in info.value.problem


def test_wecom_takes_no_secret_and_robots_need_none() -> None:
    with pytest.raises(ConfigError) as info:
        load_webhook({"kind": "wecom", "url": "https://h/", "secret": "x"}, "n")
    assert info.value.key == "n.secret"
    for kind in ("dingtalk", "feishu", "alertmanager"):
        assert load_webhook({"kind": kind, "url": "https://h/"}, "n").secret is None


def test_grafana_defaults_and_refusals() -> None:
    raw = {"url": "http://grafana:3000", "token": "glsa_x"}
    cfg = load_section(GrafanaConfig, raw, "grafana")
    assert (cfg.tags, cfg.timeout, cfg.dashboard_uid, cfg.panel_id) == (
        ("citywatch",),
        5.0,
        None,
        None,
    )
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"token": ""}, "grafana.token"),
        ({"url": "grafana:3000"}, "grafana.url"),
        ({"tags": [""]}, "grafana.tags[0]"),
        ({"panel_id": 0}, "grafana.panel_id"),
        ({"dashboard_uid": ""}, "grafana.dashboard_uid"),
        ({"timeout": "10m"}, "grafana.timeout"),
    ]
    for changes, key in refusals:
        with pytest.raises(ConfigError) as info:
            load_section(GrafanaConfig, {**raw, **changes}, "grafana")
        assert info.value.key == key
