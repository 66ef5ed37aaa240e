"""Alerting as stages: one decision per event, read by the later stages; muting as a stage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from citywatch.alerting import muting, routing
from citywatch.alerting.config import AlertingConfig, EscalationStep, Route
from citywatch.alerting.decision import Step
from citywatch.alerting.model import Alert
from citywatch.alerting.muting import Muting
from citywatch.alerting.silences import Matcher, Silence
from citywatch.clock import ManualClock
from citywatch.config import load_section
from tests.alerting.alerts import alert
from tests.alerting.test_alerting_faults import CHAIN, idle, running
from tests.helpers import await_until


def officer_alert(**labels: str) -> Alert:
    return alert(labels={"officer": "off-7", **labels})


def test_the_decision_resolves_every_step_of_the_route_once() -> None:
    route = Route(
        receivers=("{lead}", "duty", "{lead}"),
        escalate=(
            EscalationStep(after=600.0, receivers=("{unit}",), severity="red"),
            EscalationStep(after=1800.0, receivers=("district",)),
        ),
    )
    d = routing.plan(route, officer_alert(lead="lead-1"), None)
    assert d.steps == (
        Step(("lead-1", "duty"), "yellow", 0.0),
        Step(("duty",), "red", 600.0),  # no unit label: the duty desk
        Step(("district",), "critical", 1800.0),
    )
    assert not d.muted and d.last == 2
    assert d.step(-1) == d.steps[0] and d.step(7) == d.steps[2]
    assert routing.plan(route, officer_alert(), "s1").muted_by == "s1"


def test_decide_reads_the_route_the_alert_kept_by_name() -> None:
    cfg = load_section(AlertingConfig, CHAIN, "alerting")
    a = officer_alert(lead="lead-1")
    a.route = "patrols"
    assert [s.receivers for s in routing.decide(a, cfg).steps] == [
        ("lead-1",),
        ("supervisor",),
        ("duty",),
    ]
    a.route = "gone-by-a-reload"
    assert [s.receivers for s in routing.decide(a, cfg).steps] == [("lead-1",)]


def test_the_muting_stage_answers_with_the_silence_that_mutes() -> None:
    stage = Muting()
    a = officer_alert(grid="321202001001001")
    assert stage.muted_by(a, 100.0) is None
    s = Silence("s1", (Matcher("grid", "3212.*", "=~"),), 50.0, 150.0, "lead-1", "works", 0.0)
    stage.put(s)
    assert stage.muted_by(a, 100.0) == "s1" and stage.silenced_by(a, 100.0) == "s1"
    assert stage.muted_by(a, 150.0) is None  # ended
    stage.forget_ended(151.0)
    assert stage.silences == {}


async def test_one_decision_per_event_and_per_wake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"route_of": 0, "muted_by": 0}
    route_of, muted_by = routing.route_of, muting.Muting.muted_by

    def counted_route_of(*args: Any) -> Any:
        calls["route_of"] += 1
        return route_of(*args)

    def counted_muted_by(*args: Any) -> Any:
        calls["muted_by"] += 1
        return muted_by(*args)

    monkeypatch.setattr(routing, "route_of", counted_route_of)
    monkeypatch.setattr(muting.Muting, "muted_by", counted_muted_by)
    clock = ManualClock(time.time())
    async with running(tmp_path, clock) as (alerting, rec):
        # Opened and told its first receivers: one route resolution, one muting check.
        await alerting.emit([idle("firing", clock.now())])
        assert calls == {"route_of": 1, "muted_by": 1}
        await await_until(lambda: len(rec.got) == 1, what="first notice")
        # The escalation timer: one decision for the alert it wakes.
        clock.advance(601)
        await await_until(lambda: len(rec.got) == 2, what="escalated")
        assert calls == {"route_of": 2, "muted_by": 2}
        # Resolved: one decision again, for the resolution told to both.
        await alerting.emit([idle("resolved", clock.now())])
        assert calls == {"route_of": 3, "muted_by": 3}
        await await_until(lambda: len(rec.got) == 4, what="resolution told")
        assert [n.severity for n in rec.got[2:]] == ["critical", "critical"]
