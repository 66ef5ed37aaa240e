"""A generic webhook in Alertmanager's payload shape (webhook ``version: "4"``).

Anything that takes Alertmanager webhooks (alert gateways, prometheus-webhook-dingtalk,
on-call tools) takes these. Each alert's identity is in ``labels`` (``alertname`` is the
rule), what to read is in ``annotations`` (``summary``, the idempotency key ``id``).
Alertmanager knows only ``firing`` and ``resolved``: an acknowledged alert is still
``firing`` there, and the citywatch status is in ``labels.citywatch_status`` and
``annotations.status``. ``endsAt`` is ``0001-01-01T00:00:00Z`` while the alert is open,
as Alertmanager sends it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from citywatch.alerting.notifiers._http import ALERTMANAGER_ZERO_TIME, Endpoint, link, rfc3339
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.notifiers.config import WebhookConfig

_LABEL_FIELDS = ("rule", "severity", "city", "grid", "unit", "officer", "device")


@dataclass(frozen=True)
class AlertmanagerConfig(WebhookConfig):
    """A receiver of Alertmanager webhooks.

    ``secret`` is sent as ``Authorization: Bearer``; ``max_alerts`` caps the alerts of one
    payload (the rest are counted in ``truncatedAlerts``).
    """


def alert_labels(n: Notification) -> dict[str, str]:
    """The identifying labels of one alert; fields that are not set are left out."""
    out = {"alertname": n.rule}
    out.update({f: v for f in _LABEL_FIELDS if (v := getattr(n, f))})
    out["subject_kind"] = n.subject_kind
    out["subject_id"] = n.subject_id
    out["citywatch_status"] = n.status
    return out


def alert_annotations(n: Notification) -> dict[str, str]:
    """What a person reads, and the keys a receiver needs to drop repeats."""
    out = {
        "summary": n.summary,
        "id": n.id,
        "status": n.status,
        "escalation": str(n.escalation),
        "alert_id": str(n.alert_id),
        "receiver": n.receiver,
    }
    if n.details:
        out["details"] = json.dumps(dict(n.details), ensure_ascii=False, sort_keys=True)
    return out


def _common(maps: Sequence[dict[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def payload(
    alerts: Sequence[Notification], *, external_url: str | None = None, max_alerts: int = 0
) -> dict[str, Any]:
    """The Alertmanager webhook document for a batch of one receiver's alerts."""
    shown = alerts[:max_alerts] if max_alerts else alerts
    labels = [alert_labels(n) for n in shown]
    notes = [alert_annotations(n) for n in shown]
    items = [
        {
            "status": "resolved" if n.status == "resolved" else "firing",
            "labels": labels[i],
            "annotations": notes[i],
            "startsAt": rfc3339(n.starts_at),
            "endsAt": rfc3339(n.ends_at) if n.ends_at is not None else ALERTMANAGER_ZERO_TIME,
            "generatorURL": link(external_url, n) or "",
            "fingerprint": n.fingerprint,
        }
        for i, n in enumerate(shown)
    ]
    common_labels = _common(labels)
    group_labels = {k: common_labels[k] for k in ("alertname", "city") if k in common_labels}
    receiver = alerts[0].receiver
    group = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in group_labels.items())
    return {
        "version": "4",
        "groupKey": f"{{}}/{{receiver={json.dumps(receiver, ensure_ascii=False)}}}:{{{group}}}",
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if any(n.status != "resolved" for n in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common(notes),
        "externalURL": _base(external_url),
        "alerts": items,
    }


def _base(external_url: str | None) -> str:
    # The top-level link cannot hold per-alert placeholders: keep what precedes the first.
    return (external_url or "").split("{", 1)[0]


class WebhookNotifier:
    """POSTs Alertmanager-shaped JSON; a ``secret`` is sent as a bearer token.

    Any 2xx answer is a delivery; 5xx, 429, timeouts and network errors are retryable,
    other answers are not.
    """

    def __init__(self, cfg: AlertmanagerConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self._endpoint = Endpoint(
            session, cfg.url, timeout=cfg.timeout, label="webhook", secrets=[cfg.secret]
        )
        self._headers = {"Authorization": f"Bearer {cfg.secret}"} if cfg.secret else {}

    async def notify(self, alerts: Sequence[Notification]) -> None:
        """Deliver ``alerts`` in one POST or raise :class:`NotifyError`."""
        if not alerts:
            return
        body = payload(alerts, external_url=self.cfg.external_url, max_alerts=self.cfg.max_alerts)
        reply = await self._endpoint.post(body, headers=self._headers)
        self._endpoint.check_status(reply)
