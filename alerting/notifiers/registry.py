"""The notifier table: a webhook ``kind`` to the class that speaks it.

A new channel is one module plus one line here. MQTT push and Grafana
annotations are not webhooks of a receiver: the alerting service makes one of
each for everyone (:mod:`alerting.channels`).
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from alerting.notifiers.base import Notifier
from alerting.notifiers.config import WebhookConfig
from alerting.notifiers.dingtalk import DingTalkNotifier
from alerting.notifiers.feishu import FeishuNotifier
from alerting.notifiers.webhook import WebhookNotifier
from alerting.notifiers.wecom import WeComNotifier

NOTIFIERS: dict[str, Callable[[WebhookConfig, aiohttp.ClientSession], Notifier]] = {
    "alertmanager": WebhookNotifier,
    "wecom": WeComNotifier,
    "dingtalk": DingTalkNotifier,
    "feishu": FeishuNotifier,
}
