"""The alert lifecycle as pure functions of (alert, observation, now).

:func:`on_event` applies a rule's event, :func:`acknowledge` a person's
acknowledgement, and :func:`due` the passing of time: whom to tell now (the
route's receivers, each escalation step, repeat reminders) and when to look
again, reading the route's steps and the muting from the
:class:`~alerting.decision.Decision`. Each returns a new :class:`Alert` and
the :class:`Tell` list; nothing here reads the clock or touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.decision import Decision
from citywatch.alerting.model import ACKNOWLEDGED, FIRING, RESOLVED, Alert
from citywatch.models import AlertEvent


@dataclass(frozen=True, slots=True)
class Tell:
    """Tell ``receivers`` of the alert's state: one notification per receiver and channel.

    ``kind`` is ``fire``, ``escalate``, ``remind``, ``reopen``, ``ack`` or
    ``resolve``; ``n`` numbers the tell of its kind within the occurrence, so
    that ``(alert, occurrence, kind, n, receiver)`` is an idempotency key.
    """

    kind: str
    receivers: tuple[str, ...]
    severity: str
    step: int
    n: int = 0

    def key(self, alert: Alert, receiver: str) -> str:
        return f"{alert.id}-{alert.occurrence}-{self.kind}{self.n}-{receiver}"


class LifecycleError(ValueError):
    """An operation the alert's state does not allow (e.g. acknowledging a resolved alert)."""


def on_event(
    alert: Alert | None, ev: AlertEvent, now: float, reopen_window: float, new_id: int
) -> tuple[Alert | None, str | None, list[Tell]]:
    """Apply ``ev`` to the alert of its fingerprint (or None).

    Returns the alert (None when there is none), what changed (``opened``,
    ``reopened``, ``updated``, ``resolved`` or None) and the tells due at once
    (those of a reopening and a resolution; the first notification comes from
    :func:`due`).
    """
    if ev.status == "firing":
        # The window is on alerting's clock (when it resolved), not on the rule's event time.
        if alert is None or (
            alert.status == RESOLVED
            and (alert.closed_at is None or now - alert.closed_at > reopen_window)
        ):
            return _open(ev, now, new_id), "opened", []
        a = alert.copy()
        _refresh(a, ev, now)
        if alert.status != RESOLVED:
            return a, "updated", []
        return _reopen(a, now)
    if ev.status == "resolved":
        if alert is None or alert.status == RESOLVED:
            return alert, None, []
        a = alert.copy()
        _refresh(a, ev, now)
        a.status, a.ends_at, a.closed_at = RESOLVED, ev.at, now
        tells = [Tell("resolve", tuple(a.told), a.severity, a.step)] if a.told else []
        return a, "resolved", tells
    return alert, None, []


def _open(ev: AlertEvent, now: float, new_id: int) -> Alert:
    return Alert(
        id=new_id,
        fingerprint=ev.fingerprint,
        rule=ev.rule,
        severity=ev.severity,
        city=ev.city,
        subject_kind=ev.subject_kind,
        subject=ev.subject,
        starts_at=ev.at,
        opened_at=now,
        labels=dict(ev.labels),
        values=dict(ev.values),
        summary=ev.summary,
        updated_at=now,
    )


def _refresh(a: Alert, ev: AlertEvent, now: float) -> None:
    a.labels.update(ev.labels)
    a.values.update(ev.values)
    if ev.summary:
        a.summary = ev.summary
    a.updated_at = now


def _reopen(a: Alert, now: float) -> tuple[Alert, str, list[Tell]]:
    """Back within the reopen window: the same alert, its chain going on where it stopped.

    An acknowledgement stands (someone is on it; a flapping condition must not
    page them again); an unacknowledged alert tells its receivers it is back.
    """
    a.occurrence += 1
    # The chain's clock stood still while the condition was gone.
    a.opened_at += max(0.0, now - (a.closed_at if a.closed_at is not None else now))
    a.ends_at = a.closed_at = None
    a.reminders = 0
    a.status = ACKNOWLEDGED if a.ack_by is not None else FIRING
    tells: list[Tell] = []
    if a.status == FIRING and a.told:
        tells.append(Tell("reopen", tuple(a.told), a.severity, a.step))
        a.last_told_at = now
    return a, "reopened", tells


def acknowledge(alert: Alert, by: str, note: str | None, now: float) -> tuple[Alert, list[Tell]]:
    """Someone is on it: the chain and the reminders stop; everyone told hears who."""
    if alert.status == RESOLVED:
        raise LifecycleError(f"alert {alert.id} is already resolved")
    if alert.status == ACKNOWLEDGED:
        raise LifecycleError(f"alert {alert.id} was already acknowledged by {alert.ack_by}")
    a = alert.copy()
    a.status, a.ack_by, a.ack_at, a.ack_note, a.updated_at = ACKNOWLEDGED, by, now, note, now
    tells = [Tell("ack", tuple(a.told), a.severity, a.step)] if a.told else []
    return a, tells


def due(
    alert: Alert, decision: Decision, cfg: AlertingConfig, now: float
) -> tuple[Alert, list[Tell], float | None]:
    """Whom to tell of a firing alert at ``now``, and when to look again (None: never).

    The first receivers are told at once, each escalation step once its
    ``after`` has passed since the first tell, and while unacknowledged a red
    or critical alert is told again every ``repeat_interval``. A muted alert
    tells nobody and its clocks stand still (``silenced_since`` records from
    when); once its silence ends it carries on where it stopped.
    """
    if alert.status != FIRING:
        return alert, [], None
    if decision.muted:
        if alert.silenced_since is not None:
            return alert, [], None
        a = alert.copy()
        a.silenced_since = now
        return a, [], None
    a = alert.copy()
    last = decision.last
    # A route shortened (or gone) by a reload: the alert is at the end of its new chain.
    a.step = min(a.step, last)
    if a.silenced_since is not None:
        # The chain's clock and the reminders stood still while silenced.
        held = max(0.0, now - a.silenced_since)
        a.opened_at += held
        if a.last_told_at is not None:
            a.last_told_at += held
        a.silenced_since = None
    tells: list[Tell] = []
    if a.step < 0:
        a.step, a.opened_at = 0, now
        tells.append(_tell("fire", decision, 0))
    while a.step < last and now >= a.opened_at + decision.steps[a.step + 1].after:
        a.step += 1
        tells.append(_tell("escalate", decision, a.step, n=a.step))
    if tells:
        a.last_told_at = now
    severity = decision.step(a.step).severity
    repeat = cfg.repeat_interval if severity in cfg.repeat_severities else 0.0
    if not tells and repeat > 0 and a.last_told_at is not None and now >= a.last_told_at + repeat:
        a.reminders += 1
        tells.append(_tell("remind", decision, a.step, n=a.reminders))
        a.last_told_at = now
    for t in tells:
        for r in t.receivers:
            if r not in a.told:
                a.told.append(r)
    times = []
    if a.step < last:
        times.append(a.opened_at + decision.steps[a.step + 1].after)
    if repeat > 0 and a.last_told_at is not None:
        times.append(a.last_told_at + repeat)
    return a, tells, min(times) if times else None


def _tell(kind: str, decision: Decision, step: int, n: int = 0) -> Tell:
    s = decision.step(step)
    return Tell(kind, s.receivers, s.severity, step, n)
