"""Grafana annotations: the alert history drawn on the command center's dashboards.

Every notification becomes one annotation (``POST /api/annotations``, service account
token as ``Authorization: Bearer``):

- ``firing`` (first notice): a point at the alert's start;
- ``firing`` at an escalation step, and ``acknowledged``: a point at the time it was
  told (``sent_at``, or now), so the dashboard shows when it was escalated or taken;
- ``resolved``: a region from the start to the end of the alert, so each closed alert
  is a band across the time series over exactly the time it was open.

An open alert is thus a marker at its start; once resolved, its whole life is shaded.
Regions are new annotations rather than edits of the first point: a notifier keeps no
state between calls, and the point still marks the start.

Tags are ``tags`` from the configuration plus ``rule:<rule>``, ``severity:<severity>``,
``city:<city>`` and ``status:<status>``, so a dashboard's annotation query can pick,
say, red alerts of one city. The text is Chinese, one field a line, with the alert id.

Grafana has no batch endpoint: a batch is posted one annotation at a time, and the first
failure stops it. A retried batch may therefore post the annotations before the failure
again; the outbox, which owns retries, decides whether that matters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from citywatch.alerting.notifiers._http import Endpoint, fields, severity_mark, status_word
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.notifiers.config import check_http_url, check_timeout
from citywatch.config import ConfigError, duration


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
        check_timeout(self.timeout, f"{prefix}.timeout")
        if self.dashboard_uid is not None and not self.dashboard_uid:
            raise ConfigError(f"{prefix}.dashboard_uid", "must not be empty")
        if self.panel_id is not None and self.panel_id <= 0:
            raise ConfigError(f"{prefix}.panel_id", "must be positive")
        for i, tag in enumerate(self.tags):
            if not tag or not tag.isprintable():
                raise ConfigError(f"{prefix}.tags[{i}]", "must be printable and not empty")


def annotation(n: Notification, cfg: GrafanaConfig, now: float) -> dict[str, Any]:
    """The ``POST /api/annotations`` body for one notification (times in ms)."""
    told = n.sent_at or now
    body: dict[str, Any] = {
        "tags": [
            *cfg.tags,
            f"rule:{n.rule}",
            f"severity:{n.severity}",
            f"city:{n.city}",
            f"status:{n.status}",
        ],
        "text": text(n, told),
    }
    if n.status == "resolved":
        body["time"] = _ms(n.starts_at)
        body["timeEnd"] = _ms(n.ends_at if n.ends_at is not None else told)
    elif n.status == "firing" and not n.escalation:
        body["time"] = _ms(n.starts_at)
    else:
        body["time"] = _ms(told)
    if cfg.dashboard_uid:
        body["dashboardUID"] = cfg.dashboard_uid
    if cfg.panel_id is not None:
        body["panelId"] = cfg.panel_id
    return body


def text(n: Notification, now: float) -> str:
    """The annotation text: the headline, then one field a line."""
    head = f"{severity_mark(n)} {status_word(n)}：{n.summary}"
    return "\n".join([head, *(f"{k}：{v}" for k, v in fields(n, now))])


def _ms(ts: float) -> int:
    return round(ts * 1000)


class GrafanaNotifier:
    """Writes one Grafana annotation per notification (see the module docstring)."""

    def __init__(self, cfg: GrafanaConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self._endpoint = Endpoint(
            session,
            cfg.url.rstrip("/") + "/api/annotations",
            timeout=cfg.timeout,
            label="grafana",
            secrets=[cfg.token],
        )
        self._headers = {"Authorization": f"Bearer {cfg.token}", "Accept": "application/json"}

    async def notify(self, alerts: Sequence[Notification]) -> None:
        """Post an annotation per alert, oldest first, or raise :class:`NotifyError`."""
        now = time.time()
        for n in alerts:
            reply = await self._endpoint.post(annotation(n, self.cfg, now), headers=self._headers)
            self._endpoint.check_status(reply)
