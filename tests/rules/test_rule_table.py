"""The table of rules: every registered rule meets the contract, and the ports are served.

A rule registered in ``rules.registry.RULES`` that lacks a part of :class:`Rule` (a sink,
background tasks, readiness, a lifecycle) fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from citywatch.clock import ManualClock
from citywatch.models import AlertEvent, Rejected
from citywatch.rules.calendar import CalendarConfig
from citywatch.rules.cases.config import CasesConfig
from citywatch.rules.contract import CaseReader, FleetReader, Reconfigurable, Rule, RuleContext
from citywatch.rules.patrols.config import IdleConfig, PatrolsConfig
from citywatch.rules.registry import RULES


class Alerts:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        self.events.extend(events)


class Rejects:
    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        return None


def context(tmp_path: Path) -> RuleContext:
    return RuleContext(
        cases=CasesConfig(),
        calendar=CalendarConfig(),
        alerts=Alerts(),
        rejects=Rejects(),
        registry=CollectorRegistry(),
        clock=ManualClock(),
        data_dir=tmp_path,
    )


@pytest.mark.parametrize("name", list(RULES))
async def test_every_rule_meets_the_contract(name: str, tmp_path: Path) -> None:
    rule = RULES[name](context(tmp_path))
    assert isinstance(rule, Rule)
    assert rule.name == name, "the table's key is the rule's name"
    assert rule.ready()[0] is False, "not ready before its state is loaded"
    async with rule as entered:
        assert entered is rule
        ok, detail = rule.ready()
        assert ok and detail
        tasks = rule.tasks
        assert tasks and all(isinstance(t, asyncio.Task) and not t.done() for t in tasks)
        await rule.write([])
    assert all(t.done() for t in tasks), "leaving the rule stops its tasks"


def test_each_read_port_is_served_by_one_rule(tmp_path: Path) -> None:
    rules = [factory(context(tmp_path)) for factory in RULES.values()]
    for port in (CaseReader, FleetReader):
        assert sum(isinstance(r, port) for r in rules) == 1, port.__name__


async def test_a_reconfigurable_rule_takes_the_settings_of_a_new_context(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    rules = [factory(ctx) for factory in RULES.values()]
    live = [r for r in rules if isinstance(r, Reconfigurable)]
    assert [r.name for r in live] == ["patrols"]
    patrols = PatrolsConfig(idle=IdleConfig(window=1200.0))
    for rule in live:
        rule.reload(RuleContext(**{**vars(ctx), "patrols": patrols}))
        assert rule.cfg is patrols  # type: ignore[attr-defined]
