"""Notification text for people: Chinese, short enough for a phone's lock screen.

What, where, how long: ``【红灯】案件 C-1024 处置超时 2 小时 5 分 · 网格 320102001 · 鼓楼区城管``.
A rule's own summary (the patrol rules write one) is used as the "what"; without one,
the rule's words come from its spec (:data:`rules.patrols.specs.PATROL_RULES`).
"""

from __future__ import annotations

from citywatch.alerting.model import Alert
from citywatch.durations import duration_zh
from citywatch.rules.patrols.specs import PATROL_RULES

SEVERITY = {"yellow": "黄灯", "red": "红灯", "critical": "紧急"}
STEP = {
    "filing": "立案",
    "dispatch": "派遣",
    "acceptance": "接单",
    "disposal": "处置",
    "verification": "核查",
    "closing": "结案",
}
RULE = {
    "case_warning": "即将超时",
    "case_overdue": "超时",
    **{spec.name: spec.summary for spec in PATROL_RULES},
}


def what(a: Alert) -> str:
    """The condition in a few words, with the subject."""
    if a.subject_kind == "case":
        step = STEP.get(a.labels.get("step", ""), a.labels.get("step", ""))
        return f"案件 {a.subject} {step}{RULE.get(a.rule, a.rule)}"
    if a.summary:
        return a.summary
    return f"{a.subject} {RULE.get(a.rule, a.rule)}"


def summary(a: Alert, severity: str, status: str, now: float) -> str:
    """One line: severity, what, how long, where (and who acknowledged)."""
    parts = [f"【{SEVERITY.get(severity, severity)}】{what(a)}"]
    if a.subject_kind == "case":
        deadline = a.values.get("deadline")
        end = a.ends_at if status == "resolved" and a.ends_at is not None else now
        if deadline is not None and a.rule == "case_overdue":
            parts[0] += f" {duration_zh(end - deadline)}"
        elif deadline is not None and status != "resolved":
            parts[0] += f"，剩余 {duration_zh(deadline - now)}"
    elif not a.summary:
        parts[0] += f" {duration_zh(now - a.starts_at)}"
    grid = a.labels.get("grid")
    if grid:
        parts.append(f"网格 {grid}")
    unit = a.labels.get("unit")
    if unit:
        parts.append(unit)
    if status == "acknowledged" and a.ack_by:
        parts.append(f"{a.ack_by} 已确认")
    elif status == "resolved":
        parts.append("已恢复")
    return " · ".join(parts)
