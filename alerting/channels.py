"""Which channels each receiver is told over, and the notifier behind each channel.

Everything here derives from the notifier table (:mod:`alerting.notifiers.registry`)
by each kind's placement. A receiver is told over the push (MQTT) unless its
configuration says ``mqtt: false``, and over each of its ``webhooks`` (channel
``webhook:<kind>:<id>``, the id a hash of the URL, so that reordering the list
keeps queued notifications on their webhook). Each service-wide kind that is
configured (``alerting.grafana``) is told of opened and resolved alerts, its name
being both receiver and channel.
"""

from __future__ import annotations

import aiohttp

from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.notifiers.base import Notifier
from citywatch.alerting.notifiers.registry import (
    PUSH,
    SERVICE,
    WEBHOOK,
    kind_of_channel,
    placed,
    webhook_channel,
)

# Asked for every receiver of every tell: the table's placements, looked up once.
_PUSH_KINDS = tuple(k.name for k in placed(PUSH))
_SERVICE_KINDS = tuple(placed(SERVICE))


class Channels:
    """Resolves (receiver, channel) to a notifier, following configuration reloads.

    ``mqtt`` is the push kind's notifier, a connection the service holds (None: no push).
    """

    def __init__(
        self, cfg: AlertingConfig, mqtt: Notifier | None, session: aiohttp.ClientSession | None
    ) -> None:
        self.mqtt = mqtt
        self.session = session
        self._webhooks: dict[tuple[str, str], Notifier] = {}
        self._services: dict[str, Notifier] = {}
        self.cfg = cfg
        self.reconfigure(cfg)

    def reconfigure(self, cfg: AlertingConfig) -> None:
        """New receivers and webhooks from now on; deliveries already queued follow them."""
        self.cfg = cfg
        self._webhooks.clear()
        self._services = {}
        if self.session is None:
            return
        for kind in _SERVICE_KINDS:
            settings = getattr(cfg, kind.name)
            if settings is not None:
                self._services[kind.name] = kind.make(settings, self.session)

    @property
    def services(self) -> list[str]:
        """The service-wide channels in force, told of every alert opened and resolved."""
        return list(self._services)

    def channels_for(self, receiver: str) -> list[str]:
        """The channels ``receiver`` is told over, as its configuration says."""
        rc = self.cfg.receiver(receiver)
        out = [k for k in _PUSH_KINDS if self.mqtt is not None and getattr(rc, k)]
        if rc.webhooks:
            out.extend(webhook_channel(h) for h in rc.webhooks)
        return out

    def notifier(self, receiver: str, channel: str) -> Notifier | None:
        """The notifier of ``channel`` for ``receiver``; None if it is not configured (now)."""
        kind = kind_of_channel(channel)
        if kind is None:
            return None
        if kind.placement is PUSH:
            return self.mqtt
        if kind.placement is SERVICE:
            return self._services.get(kind.name)
        assert kind.placement is WEBHOOK
        if self.session is None:
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
            n = self._webhooks[key] = kind.make(hook, self.session)
        return n
