"""The notify stage: what each tell becomes, one notification per receiver and channel.

Pure functions of the alert, its :class:`~alerting.decision.Decision`, the tell
and the receivers' channels; the delivery's key is the notification's
idempotency key plus the channel. The outbox (:mod:`alerting.outbox`) delivers.
The notification's id is ``{epoch}-{alert id}-{occurrence}-{kind}{n}-{receiver}``:
the alert store's epoch keeps it unique across a store started afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from citywatch.alerting.decision import Decision
from citywatch.alerting.lifecycle import Tell
from citywatch.alerting.model import ACKNOWLEDGED, FIRING, RESOLVED, Alert
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.store import Change, Delivery
from citywatch.alerting.summary import summary
from citywatch.models import AlertChange

STATUS_OF = {"resolve": RESOLVED, "ack": ACKNOWLEDGED}
_ROUTED = frozenset({"fire", "escalate", "remind"})


def notification(
    a: Alert, t: Tell, receiver: str, status: str, now: float, epoch: str
) -> Notification:
    """The notification of tell ``t`` for ``receiver``; ``epoch``: the alert store's."""
    labels = a.labels
    details: dict[str, Any] = {
        "kind": t.kind,
        "occurrence": a.occurrence,
        "labels": dict(labels),
        "values": dict(a.values),
    }
    if status == ACKNOWLEDGED:
        details.update(ack_by=a.ack_by, ack_note=a.ack_note, ack_at=a.ack_at)
    if t.kind == "remind":
        details["reminder"] = t.n
    return Notification(
        id=f"{epoch}-{t.key(a, receiver)}",
        fingerprint=a.fingerprint,
        rule=a.rule,
        severity=t.severity,
        status=status,
        city=a.city,
        subject_kind=a.subject_kind,
        subject_id=a.subject,
        starts_at=a.starts_at,
        summary=summary(a, t.severity, status, now),
        receiver=receiver,
        escalation=t.step,
        ends_at=a.ends_at if status == RESOLVED else None,
        grid=labels.get("grid"),
        unit=labels.get("unit"),
        officer=labels.get("officer") or (a.subject if a.subject_kind == "officer" else None),
        device=labels.get("device"),
        details=details,
        alert_id=a.id,
    )


def deliveries(
    a: Alert,
    decision: Decision,
    tells: Sequence[Tell],
    now: float,
    channels_for: Callable[[str], list[str]],
    epoch: str,
) -> list[Delivery]:
    """One delivery per receiver of each tell and channel of the receiver.

    The route's tells (first notice, escalations, reminders) carry their step's
    severity; acknowledgements, reopenings and resolutions are told at the
    severity the alert has reached on its route.
    """
    out: list[Delivery] = []
    for t in tells:
        if t.kind not in _ROUTED:
            t = replace(t, severity=decision.step(a.step).severity)
        status = STATUS_OF.get(t.kind, FIRING)
        for r in t.receivers:
            n = notification(a, t, r, status, now, epoch)
            payload = orjson.dumps(n.to_json())
            for channel in channels_for(r):
                out.append(Delivery(f"{n.id}|{channel}", a.id, r, channel, payload, now, now))
    return out


def service_delivery(a: Alert, change: str, now: float, channel: str, epoch: str) -> Delivery:
    """What a service-wide channel hears of an opened or resolved alert (Grafana: an annotation).

    The channel's name is its receiver too; ``epoch``: the alert store's.
    """
    status = RESOLVED if change == "resolved" else FIRING
    tell = Tell("resolve" if status == RESOLVED else "fire", (channel,), a.severity, 0)
    n = notification(a, tell, channel, status, now, epoch)
    return Delivery(
        f"{n.id}|{channel}", a.id, channel, channel, orjson.dumps(n.to_json()), now, now
    )


def history_point(c: Change) -> AlertChange:
    """The ``alert`` point of one change (docs/schema.md)."""
    a = c.alert
    detail = c.detail or {}
    receivers = detail.get("receivers") or ()
    return AlertChange(
        alert_id=a.id,
        fingerprint=a.fingerprint,
        rule=a.rule,
        severity=a.severity,
        status=a.status,
        change=c.change,
        city=a.city,
        subject_kind=a.subject_kind,
        subject=a.subject,
        at=c.at,
        step=int(detail.get("step", max(a.step, 0))),
        grid=a.labels.get("grid"),
        unit=a.labels.get("unit"),
        officer=a.labels.get("officer"),
        receivers=",".join(receivers),
        by=detail.get("by"),
        note=detail.get("note"),
    )
