"""Which channels each receiver is told over, and the notifier behind each channel.

A receiver is pushed over MQTT unless its configuration says ``mqtt: false``,
and over each of its ``webhooks`` (channel ``webhook:<kind>:<id>``, the id a
hash of the URL, so that reordering the list keeps queued notifications on
their webhook). With
``alerting.grafana`` set, opened and resolved alerts also become annotations
(receiver and channel ``grafana``).
"""

from __future__ import annotations

import hashlib

import aiohttp

from alerting.config import AlertingConfig
from alerting.notifiers.base import Notifier
from alerting.notifiers.config import WebhookConfig
from alerting.notifiers.grafana import GrafanaNotifier
from alerting.notifiers.registry import NOTIFIERS

MQTT = "mqtt"
GRAFANA = "grafana"


class Channels:
    """Resolves (receiver, channel) to a notifier, following configuration reloads."""

    def __init__(
        self, cfg: AlertingConfig, mqtt: Notifier | None, session: aiohttp.ClientSession | None
    ) -> None:
        self.mqtt = mqtt
        self.session = session
        self._webhooks: dict[tuple[str, str], Notifier] = {}
        self._grafana: Notifier | None = None
        self.cfg = cfg
        self.reconfigure(cfg)

    def reconfigure(self, cfg: AlertingConfig) -> None:
        """New receivers and webhooks from now on; deliveries already queued follow them."""
        self.cfg = cfg
        self._webhooks.clear()
        self._grafana = None
        if cfg.grafana is not None and self.session is not None:
            self._grafana = GrafanaNotifier(cfg.grafana, self.session)

    @property
    def grafana(self) -> bool:
        return self._grafana is not None

    def channels_for(self, receiver: str) -> list[str]:
        rc = self.cfg.receiver(receiver)
        out = [MQTT] if rc.mqtt and self.mqtt is not None else []
        out.extend(webhook_channel(h) for h in rc.webhooks)
        return out

    def notifier(self, receiver: str, channel: str) -> Notifier | None:
        if channel == MQTT:
            return self.mqtt
        if channel == GRAFANA:
            return self._grafana
        if not channel.startswith("webhook:") or self.session is None:
            return None
        key = (receiver, channel)
        n = self._webhooks.get(key)
        if n is None:
            hook = next(
                (h for h in self.cfg.receiver(receiver).webhooks if webhook_channel(h) == channel),
                None,
            )
            if hook is None:
                return None
            n = self._webhooks[key] = NOTIFIERS[hook.kind](hook, self.session)
        return n


def webhook_channel(hook: WebhookConfig) -> str:
    """The channel of a webhook: its kind and a short hash of its URL (no secret shown)."""
    digest = hashlib.sha256(hook.url.encode()).hexdigest()[:8]
    return f"webhook:{hook.kind}:{digest}"
