"""The notifier table: every kind of notifier, listed once.

A kind is one module holding its settings dataclass and its notifier class, plus
one line here (:class:`~alerting.notifiers.base.NotifierKind`). Everything else
derives from this table: which ``kind`` a webhook entry may name and the
settings class it is read into, the channel names and their metrics label, and
the notifier behind a channel (:mod:`alerting.channels`).
``tests/alerting/notifiers/test_notifier_table.py`` fails when a kind lacks a part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from citywatch.alerting.notifiers.base import NotifierKind, Placement
from citywatch.alerting.notifiers.config import WebhookConfig
from citywatch.alerting.notifiers.dingtalk import DingTalkConfig, DingTalkNotifier
from citywatch.alerting.notifiers.feishu import FeishuConfig, FeishuNotifier
from citywatch.alerting.notifiers.grafana import GrafanaConfig, GrafanaNotifier
from citywatch.alerting.notifiers.mqtt import MqttPush
from citywatch.alerting.notifiers.webhook import AlertmanagerConfig, WebhookNotifier
from citywatch.alerting.notifiers.wecom import WeComConfig, WeComNotifier
from citywatch.config import ConfigError, load_section

PUSH, SERVICE, WEBHOOK = Placement.PUSH, Placement.SERVICE, Placement.WEBHOOK


def _table(*kinds: NotifierKind) -> Mapping[str, NotifierKind]:
    table = {k.name: k for k in kinds}
    if len(table) != len(kinds):
        raise ValueError("a notifier kind is listed twice")
    return table


NOTIFIERS: Mapping[str, NotifierKind] = _table(
    NotifierKind("mqtt", PUSH, MqttPush, None),
    NotifierKind("grafana", SERVICE, GrafanaNotifier, GrafanaConfig),
    NotifierKind("alertmanager", WEBHOOK, WebhookNotifier, AlertmanagerConfig),
    NotifierKind("wecom", WEBHOOK, WeComNotifier, WeComConfig),
    NotifierKind("dingtalk", WEBHOOK, DingTalkNotifier, DingTalkConfig),
    NotifierKind("feishu", WEBHOOK, FeishuNotifier, FeishuConfig),
)
"""Every kind by name, in the order the documentation and error messages list them."""

_WEBHOOK_PREFIX = "webhook:"


def placed(placement: Placement) -> list[NotifierKind]:
    """The kinds configured at ``placement``, in table order."""
    return [k for k in NOTIFIERS.values() if k.placement is placement]


def webhook_config_class(raw: Mapping[str, Any], key: str) -> type[WebhookConfig]:
    """The settings class of the webhook entry ``raw``, by its ``kind``; ``key`` names it."""
    kind = raw.get("kind", "")
    key = f"{key}.kind" if key else "kind"
    if isinstance(kind, bool) or not isinstance(kind, str | int):
        raise ConfigError(key, f"expected a string, got {kind!r}")
    found = NOTIFIERS.get(str(kind))
    if found is None or found.placement is not WEBHOOK or found.config is None:
        names = ", ".join(k.name for k in placed(WEBHOOK))
        raise ConfigError(key, f"must be one of {names}, got {str(kind)!r}")
    config: type[WebhookConfig] = found.config
    return config


def webhook_channel(hook: WebhookConfig) -> str:
    """The channel of a webhook: its kind and a short hash of its URL (no secret shown).

    The hash, not the position in the list, names it, so that reordering a
    receiver's webhooks keeps queued notifications on theirs.
    """
    digest = hashlib.sha256(hook.url.encode()).hexdigest()[:8]
    return f"{_WEBHOOK_PREFIX}{hook.kind}:{digest}"


def channel_kind(channel: str) -> str:
    """The kind behind a channel: ``mqtt``, ``grafana``, or a webhook's kind (a metrics label)."""
    if channel.startswith(_WEBHOOK_PREFIX):
        return channel.split(":")[1]
    return channel


def kind_of_channel(channel: str) -> NotifierKind | None:
    """The kind whose notifier serves ``channel``; None for a channel no kind names."""
    webhook = channel.startswith(_WEBHOOK_PREFIX)
    kind = NOTIFIERS.get(channel_kind(channel))
    if kind is None or webhook != (kind.placement is WEBHOOK):
        return None
    return kind


def load_webhook(raw: Mapping[str, Any], key: str) -> WebhookConfig:
    """One webhook entry, read into its kind's settings class; errors name ``key``'s parts."""
    return load_section(webhook_config_class(raw, key), raw, key)
