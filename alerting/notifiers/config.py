"""Settings of the HTTP notifiers: chat robots and generic webhooks, and Grafana annotations."""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from citywatch.config import ConfigError, duration

KINDS = ("alertmanager", "wecom", "dingtalk", "feishu")
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


def _check_timeout(value: float, key: str) -> None:
    if not 0 < value <= 300:
        raise ConfigError(key, "must be more than 0s and at most 5m")


@dataclass(frozen=True)
class WebhookConfig:
    """One webhook destination: a chat robot (WeCom, DingTalk, Feishu) or an Alertmanager receiver.

    ``secret`` is the signing secret of a DingTalk or Feishu robot with signing on, or,
    for ``alertmanager``, a bearer token sent as ``Authorization: Bearer``; WeCom robots
    have none. ``mention_all_on`` lists the severities that @ everyone in the group
    (DingTalk, Feishu) while the alert is open. ``external_url`` is linked from every
    message; it may hold ``{id}``, ``{alert_id}``, ``{fingerprint}``, ``{city}`` and
    ``{rule}``. ``max_alerts`` caps the alerts of one Alertmanager payload (0: no cap).
    """

    kind: str = ""
    url: str = ""
    secret: str | None = None
    timeout: float = duration(5.0)
    mention_all_on: tuple[str, ...] = ("critical",)
    external_url: str | None = None
    max_alerts: int = 0

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming the first bad key under ``prefix``."""
        if self.kind not in KINDS:
            raise ConfigError(
                f"{prefix}.kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        if not self.url:
            raise ConfigError(f"{prefix}.url", "must be set")
        check_http_url(self.url, f"{prefix}.url")
        if self.secret is not None and not self.secret:
            raise ConfigError(f"{prefix}.secret", "must not be empty (leave it out instead)")
        if self.secret is not None and self.kind == "wecom":
            raise ConfigError(f"{prefix}.secret", "WeCom robots are not signed; the key is in url")
        _check_timeout(self.timeout, f"{prefix}.timeout")
        for i, sev in enumerate(self.mention_all_on):
            if sev not in SEVERITIES:
                raise ConfigError(
                    f"{prefix}.mention_all_on[{i}]", f"must be one of {', '.join(SEVERITIES)}"
                )
        if self.external_url is not None:
            check_link_template(self.external_url, f"{prefix}.external_url")
        if self.max_alerts < 0:
            raise ConfigError(f"{prefix}.max_alerts", "must not be negative")


@dataclass(frozen=True)
class GrafanaConfig:
    """Grafana annotations: where, with which service account token, on which dashboard.

    Without ``dashboard_uid`` the annotations are organisation-wide and a dashboard shows
    them through an annotation query on ``tags``; with it they belong to that dashboard
    (and to ``panel_id`` if given).
    """

    url: str = ""
    token: str = ""
    timeout: float = duration(5.0)
    dashboard_uid: str | None = None
    panel_id: int | None = None
    tags: tuple[str, ...] = ("citywatch",)

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming the first bad key under ``prefix``."""
        if not self.url:
            raise ConfigError(f"{prefix}.url", "must be set")
        check_http_url(self.url, f"{prefix}.url")
        if not self.token:
            raise ConfigError(f"{prefix}.token", "must be set to a service account token")
        _check_timeout(self.timeout, f"{prefix}.timeout")
        if self.dashboard_uid is not None and not self.dashboard_uid:
            raise ConfigError(f"{prefix}.dashboard_uid", "must not be empty")
        if self.panel_id is not None and self.panel_id <= 0:
            raise ConfigError(f"{prefix}.panel_id", "must be positive")
        for i, tag in enumerate(self.tags):
            if not tag or not tag.isprintable():
                raise ConfigError(f"{prefix}.tags[{i}]", "must be printable and not empty")


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
