"""What the notifiers' settings share: the keys of every webhook, and their checks.

Each kind's own settings class lives beside its notifier (``WeComConfig`` in
:mod:`alerting.notifiers.wecom`, ``GrafanaConfig`` in
:mod:`alerting.notifiers.grafana`, ...); a webhook's settings class derives from
:class:`WebhookConfig`, and the ``kind`` key of each ``webhooks`` entry picks it
from the table (:mod:`alerting.notifiers.registry`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from citywatch.config import ConfigError, duration

SEVERITIES = ("yellow", "red", "critical")
# Placeholders an ``external_url`` may hold, filled from each alert.
LINK_FIELDS = ("id", "alert_id", "fingerprint", "city", "rule")


def check_http_url(url: str, key: str) -> None:
    """Refuse anything but an absolute ``http://`` or ``https://`` URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f"scheme must be http:// or https://, got {parts.scheme or 'none'}")
    if not parts.hostname:
        raise ConfigError(key, "no host in the URL")


def check_timeout(value: float, key: str) -> None:
    """A request timeout: more than 0 and at most 5 minutes."""
    if not 0 < value <= 300:
        raise ConfigError(key, "must be more than 0s and at most 5m")


@dataclass(frozen=True)
class WebhookConfig:
    """The keys every webhook entry takes; each kind's settings class derives from this.

    ``kind`` names the kind (the table's name), which picks the settings class when
    the file is read. ``secret`` is what the kind signs or authenticates with (a
    kind that takes none says so in :attr:`secret_refused`). ``mention_all_on`` lists
    the severities that @ everyone in a group while the alert is open. ``external_url``
    is linked from every message; it may hold ``{id}``, ``{alert_id}``,
    ``{fingerprint}``, ``{city}`` and ``{rule}``. ``max_alerts`` caps the alerts of
    one payload where the kind batches them in one document (0: no cap). Every kind
    accepts every key, so that a file stays valid when an entry changes its kind.
    """

    kind: str = ""
    url: str = ""
    secret: str | None = None
    timeout: float = duration(5.0)
    mention_all_on: tuple[str, ...] = ("critical",)
    external_url: str | None = None
    max_alerts: int = 0

    secret_refused: ClassVar[str | None] = None
    """Why this kind refuses a ``secret`` (None: it takes one)."""

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming the first bad key under ``prefix``."""
        if not self.url:
            raise ConfigError(f"{prefix}.url", "must be set")
        check_http_url(self.url, f"{prefix}.url")
        if self.secret is not None and not self.secret:
            raise ConfigError(f"{prefix}.secret", "must not be empty (leave it out instead)")
        if self.secret is not None and self.secret_refused is not None:
            raise ConfigError(f"{prefix}.secret", self.secret_refused)
        check_timeout(self.timeout, f"{prefix}.timeout")
        for i, sev in enumerate(self.mention_all_on):
            if sev not in SEVERITIES:
                raise ConfigError(
                    f"{prefix}.mention_all_on[{i}]", f"must be one of {', '.join(SEVERITIES)}"
                )
        if self.external_url is not None:
            check_link_template(self.external_url, f"{prefix}.external_url")
        if self.max_alerts < 0:
            raise ConfigError(f"{prefix}.max_alerts", "must not be negative")


def check_link_template(template: str, key: str) -> None:
    """Refuse a link that is not http(s) or uses a placeholder other than :data:`LINK_FIELDS`."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(key, f"bad placeholder: {exc}") from None
    for name in names:
        if name not in LINK_FIELDS:
            known = ", ".join("{" + f + "}" for f in LINK_FIELDS)
            raise ConfigError(key, f"unknown placeholder {{{name}}} (known: {known})")
    check_http_url(template, key)
