"""The one table of rules. A new rule is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from citywatch.clock import Clock
from citywatch.sink import Sink
from rules.calendar import CalendarConfig
from rules.cases.config import CasesConfig
from rules.cases.kpi import KpiMetrics
from rules.cases.metrics import CaseMetrics
from rules.cases.rule import CaseRule, RejectSink
from rules.events import AlertSink


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


RULES: dict[str, Callable[[RuleContext], Any]] = {
    "cases": case_rule,
}
