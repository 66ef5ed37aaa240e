"""Restoring open cases: stored instants when nothing changed, recomputed when limits did."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from citywatch.clock import ManualClock
from citywatch.config import load_section
from citywatch.models import CaseEvent
from citywatch.rules.calendar import CalendarConfig
from citywatch.rules.cases.config import CasesConfig
from citywatch.rules.cases.metrics import CaseMetrics
from citywatch.rules.cases.rule import CaseRule
from tests.helpers import Collect, await_until

T0 = 1_790_000_000.0


def rule(path: Path, filing: str, out: Collect) -> CaseRule:
    cfg = load_section(CasesConfig, {"calendar": "natural", "limits": {"filing": filing}}, "cases")
    return CaseRule(
        cfg, CalendarConfig(), path, out, out, CaseMetrics(CollectorRegistry()), ManualClock(T0)
    )


async def test_changed_limits_are_applied_to_open_cases_at_restart(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite"
    out = Collect()
    async with rule(db, "100s", out) as r:
        await r.write([CaseEvent("321200", "R1", T0, "reported", T0)])
        assert r.timers.next_at() == T0 + 80
    async with rule(db, "100s", out) as r:
        assert r.timers.next_at() == T0 + 80, "same configuration: the stored instant"
    async with rule(db, "1000s", out) as r:
        # New limit: recomputed from the history, and ticked at once.
        await await_until(lambda: r.timers.next_at() == T0 + 800, timeout=5, what="recomputed")
        assert r.states[("321200", "R1")].derived.clocks["filing"].limit == 1000
    assert out.events == []
