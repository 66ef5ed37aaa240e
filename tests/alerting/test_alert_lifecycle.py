"""The alert lifecycle as pure functions, with an injected clock: no sleeping."""

from __future__ import annotations

import pytest

from citywatch.alerting import lifecycle, routing
from citywatch.alerting.config import AlertingConfig, EscalationStep, Route
from citywatch.alerting.lifecycle import LifecycleError, Tell, acknowledge, on_event
from citywatch.alerting.model import ACKNOWLEDGED, FIRING, RESOLVED, Alert
from citywatch.config import load_section
from citywatch.models import AlertEvent

T0 = 1_790_000_000.0
ROUTE = Route(
    receivers=("{lead}",),
    escalate=(
        EscalationStep(after=600.0, receivers=("district-supervisor",)),
        EscalationStep(after=1800.0, receivers=("duty",)),
    ),
)
CFG = AlertingConfig(reopen_window=600.0, repeat_interval=900.0)


def event(
    status: str = "firing", at: float = T0, rule: str = "patrol_idle", **labels: str
) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        status=status,
        severity="red" if rule == "device_offline" else "yellow",
        city="321200",
        subject_kind="officer",
        subject="off-7",
        at=at,
        labels={"officer": "off-7", "lead": "lead-1", **labels},
        values={"held": 60.0},
        summary="off-7 原地停留 10 分钟",
    )


def due(
    a: Alert, route: Route, cfg: AlertingConfig, now: float, silenced: bool
) -> tuple[Alert, list[Tell], float | None]:
    """:func:`lifecycle.due` with the decision the routing and muting stages make for ``a``."""
    return lifecycle.due(a, routing.plan(route, a, "silence-1" if silenced else None), cfg, now)


def apply(
    a: Alert, ev: AlertEvent, now: float, new_id: int = 2
) -> tuple[Alert, str | None, list[Tell]]:
    out, change, tells = on_event(a, ev, now, CFG.reopen_window, new_id)
    assert out is not None
    return out, change, tells


def opened(ev: AlertEvent | None = None, now: float = T0) -> Alert:
    alert, change, tells = on_event(None, ev or event(), now, CFG.reopen_window, 1)
    assert alert is not None and change == "opened" and tells == []
    return alert


def test_fingerprint_is_rule_and_subject_and_a_cases_step() -> None:
    a, b = event(), event(at=T0 + 5, grid="x")
    assert a.fingerprint == b.fingerprint == "patrol_idle:321200:officer:off-7"
    assert event(rule="device_offline").fingerprint != a.fingerprint
    case = AlertEvent(
        "case_overdue", "firing", "red", "321200", "case", "C1", T0, {"step": "disposal"}
    )
    assert case.fingerprint == "case_overdue:321200:case:C1:disposal"


def test_firing_again_while_open_updates_the_same_alert_without_telling_anyone() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    b, change, tells = on_event(a, event(at=T0 + 30, grid="g9"), T0 + 30, 600.0, 2)
    assert b is not None and change == "updated" and tells == []
    assert b.id == a.id and b.labels["grid"] == "g9" and b.status == FIRING


def test_first_receivers_at_once_then_each_escalation_step_on_time() -> None:
    a = opened()
    a, tells, nxt = due(a, ROUTE, CFG, T0, False)
    assert [(t.kind, t.receivers, t.severity) for t in tells] == [("fire", ("lead-1",), "yellow")]
    assert nxt == T0 + 600
    a, tells, nxt = due(a, ROUTE, CFG, T0 + 599.9, False)
    assert tells == [] and nxt == T0 + 600
    a, tells, nxt = due(a, ROUTE, CFG, T0 + 600, False)
    assert [(t.kind, t.receivers, t.severity, t.step) for t in tells] == [
        ("escalate", ("district-supervisor",), "critical", 1)
    ]
    assert nxt == T0 + 1500  # the reminder of the critical step comes before the next step
    a, tells, nxt = due(a, ROUTE, CFG, T0 + 1800, False)
    assert [t.receivers for t in tells] == [("duty",)]
    assert a.told == ["lead-1", "district-supervisor", "duty"]


def test_late_wakeup_catches_up_every_step_due() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    a, tells, _ = due(a, ROUTE, CFG, T0 + 3600, False)
    assert [t.step for t in tells] == [1, 2]


def test_acknowledgement_stops_the_chain_and_tells_everyone_told() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    a, _, _ = due(a, ROUTE, CFG, T0 + 600, False)
    a, tells = acknowledge(a, "lead-1", "on my way", T0 + 700)
    assert a.status == ACKNOWLEDGED and a.ack_by == "lead-1" and a.ack_note == "on my way"
    assert [(t.kind, t.receivers) for t in tells] == [("ack", ("lead-1", "district-supervisor"))]
    a, tells, nxt = due(a, ROUTE, CFG, T0 + 5000, False)
    assert tells == [] and nxt is None
    with pytest.raises(LifecycleError):
        acknowledge(a, "x", None, T0 + 800)


def test_resolution_ends_the_chain_and_tells_everyone_told() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    b, change, tells = on_event(a, event("resolved", at=T0 + 100), T0 + 101, 600.0, 2)
    assert b is not None and change == "resolved" and b.status == RESOLVED and b.ends_at == T0 + 100
    assert [(t.kind, t.receivers) for t in tells] == [("resolve", ("lead-1",))]
    _, tells, nxt = due(b, ROUTE, CFG, T0 + 5000, False)
    assert tells == [] and nxt is None
    with pytest.raises(LifecycleError):
        acknowledge(b, "lead-1", None, T0 + 200)
    # Resolved twice, or never opened: nothing happens.
    assert on_event(b, event("resolved"), T0 + 102, 600.0, 2)[1] is None
    assert on_event(None, event("resolved"), T0, 600.0, 2) == (None, None, [])


def test_firing_again_within_the_reopen_window_reopens_the_same_alert() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    a, _, _ = apply(a, event("resolved"), T0 + 100)
    b, change, tells = apply(a, event(at=T0 + 400), T0 + 400)
    assert change == "reopened"
    assert b.id == a.id and b.occurrence == 2 and b.status == FIRING and b.ends_at is None
    assert [t.kind for t in tells] == ["reopen"]
    # The chain's clock stood still while resolved: the first step is due 600 s of firing in.
    assert b.opened_at == T0 + 300
    _, tells, _ = due(b, ROUTE, CFG, T0 + 899, False)
    assert tells == []
    _, tells, _ = due(b, ROUTE, CFG, T0 + 900, False)
    assert [t.step for t in tells] == [1]
    # The idempotency keys of the two occurrences differ.
    assert tells[0].key(b, "x") != tells[0].key(a, "x")


def test_firing_after_the_reopen_window_opens_a_new_alert() -> None:
    a = opened()
    a, _, _ = apply(a, event("resolved"), T0 + 100)
    b, change, _ = apply(a, event(at=T0 + 701), T0 + 701)
    assert change == "opened" and b.id == 2 and b.occurrence == 1


def test_a_flapping_acknowledged_alert_stays_acknowledged_and_quiet() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    a, _ = acknowledge(a, "lead-1", None, T0 + 10)
    for k in range(5):
        a, _, tells = apply(a, event("resolved"), T0 + 20 + 20 * k)
        a, change, tells = apply(a, event(), T0 + 30 + 20 * k)
        assert change == "reopened" and a.status == ACKNOWLEDGED and tells == []


def test_repeat_reminders_for_unacknowledged_red_alerts_only() -> None:
    cfg = AlertingConfig(repeat_interval=300.0)
    route = Route(receivers=("duty",))
    red = opened(event(rule="device_offline"))
    red, _, nxt = due(red, route, cfg, T0, False)
    assert nxt == T0 + 300
    red, tells, nxt = due(red, route, cfg, T0 + 300, False)
    assert [(t.kind, t.n, t.receivers) for t in tells] == [("remind", 1, ("duty",))]
    assert nxt == T0 + 600
    red, tells, _ = due(red, route, cfg, T0 + 600, False)
    assert [t.n for t in tells] == [2] and tells[0].key(red, "duty").endswith("remind2-duty")
    yellow = opened()
    yellow, _, nxt = due(yellow, route, cfg, T0, False)
    assert nxt is None
    acked, _ = acknowledge(red, "duty", None, T0 + 601)
    assert due(acked, route, cfg, T0 + 2000, False)[1] == []


def test_a_silenced_alert_tells_nobody_and_carries_on_after() -> None:
    a = opened()
    a, tells, nxt = due(a, ROUTE, CFG, T0, True)
    assert tells == [] and nxt is None and a.step == -1
    # Once the silence ends, the first receivers are told and the chain counts from then.
    a, tells, nxt = due(a, ROUTE, CFG, T0 + 3600, False)
    assert [t.kind for t in tells] == ["fire"] and nxt == T0 + 3600 + 600


def test_a_lead_missing_from_the_alert_falls_back_to_duty() -> None:
    ev = event()
    ev = ev._replace(labels={"officer": "off-7"})
    _, tells, _ = due(opened(ev), ROUTE, CFG, T0, False)
    assert tells[0].receivers == ("duty",)
    bad = ev._replace(labels={"lead": "a/b/#"})
    _, tells, _ = due(opened(bad), ROUTE, CFG, T0, False)
    assert tells[0].receivers == ("duty",)


def test_the_alert_document_round_trips() -> None:
    a = opened()
    a, _, _ = due(a, ROUTE, CFG, T0, False)
    assert Alert.from_json(a.to_json()) == a


def test_escalation_steps_must_grow() -> None:
    from citywatch.config import ConfigError

    raw = {
        "routes": [
            {
                "receivers": ["duty"],
                "escalate": [
                    {"after": "10m", "receivers": ["a"]},
                    {"after": "5m", "receivers": ["b"]},
                ],
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"alerting.routes\[0\].escalate\[1\].after"):
        load_section(AlertingConfig, raw, "alerting")
