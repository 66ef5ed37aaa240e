"""The one table of rules. A new rule is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from citywatch.clock import Clock
from citywatch.sink import RejectSink, Sink
from rules.calendar import CalendarConfig
from rules.cases.config import CasesConfig
from rules.cases.kpi import KpiMetrics
from rules.cases.metrics import CaseMetrics
from rules.cases.rule import CaseRule
from rules.events import AlertSink
from rules.patrols.config import PatrolsConfig
from rules.patrols.grids import Grids
from rules.patrols.metrics import PatrolMetrics
from rules.patrols.rule import PatrolRule


@dataclass(frozen=True)
class RuleContext:
    """What a rule may use: its settings, its outputs, metrics, the clock, the data folder."""

    cases: CasesConfig
    calendar: CalendarConfig
    alerts: AlertSink
    rejects: RejectSink
    registry: CollectorRegistry
    clock: Clock
    data_dir: Path
    store: Sink | None = None
    """Where rules store what they compute (the InfluxDB writer), beside alert events."""
    patrols: PatrolsConfig = field(default_factory=PatrolsConfig)
    grids: Grids | None = None
    """The unit grid cells (``grids_file``); without them out-of-grid and coverage are off."""


def case_rule(ctx: RuleContext) -> CaseRule:
    return CaseRule(
        ctx.cases,
        ctx.calendar,
        ctx.data_dir / "cases.sqlite",
        ctx.alerts,
        ctx.rejects,
        CaseMetrics(ctx.registry),
        ctx.clock,
        kpi_sink=ctx.store,
        kpi_metrics=KpiMetrics(ctx.registry),
    )


def patrol_rule(ctx: RuleContext) -> PatrolRule:
    return PatrolRule(
        ctx.patrols,
        ctx.grids,
        ctx.data_dir / "patrols.sqlite",
        ctx.alerts,
        ctx.store,
        PatrolMetrics(ctx.registry),
        ctx.clock,
    )


RULES: dict[str, Callable[[RuleContext], Any]] = {
    "cases": case_rule,
    "patrols": patrol_rule,
}
