"""The one table of rules: a name to the factory that makes the rule from its context.

A new rule is one module (a class meeting :class:`rules.contract.Rule`) plus one
line here; ``tests/rules/test_rule_table.py`` holds every entry to the contract.
"""

from __future__ import annotations

from collections.abc import Callable

from citywatch.rules.cases.kpi import KpiMetrics
from citywatch.rules.cases.metrics import CaseMetrics
from citywatch.rules.cases.rule import CaseRule
from citywatch.rules.contract import Rule, RuleContext
from citywatch.rules.patrols.metrics import PatrolMetrics
from citywatch.rules.patrols.rule import PatrolRule

__all__ = ["RULES", "Rule", "RuleContext", "case_rule", "patrol_rule"]


def case_rule(ctx: RuleContext) -> CaseRule:
    """The case rule: time limits per step, yellow and red lights (electronic supervision)."""
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
        topic_root=ctx.topic_root,
    )


def patrol_rule(ctx: RuleContext) -> PatrolRule:
    """The patrol rules (:data:`rules.patrols.specs.PATROL_RULES`) over every officer on shift."""
    return PatrolRule(
        ctx.patrols,
        ctx.grids,
        ctx.data_dir / "patrols.sqlite",
        ctx.alerts,
        ctx.store,
        PatrolMetrics(ctx.registry),
        ctx.clock,
    )


RULES: dict[str, Callable[[RuleContext], Rule]] = {
    "cases": case_rule,
    "patrols": patrol_rule,
}
"""Made, entered and fed in this order; the key is the rule's ``name``."""
