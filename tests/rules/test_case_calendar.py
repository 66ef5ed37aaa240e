"""Case clocks on the working calendar: the National Day example, lunch, suspensions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from citywatch.config import load_section
from citywatch.models import CaseEvent
from citywatch.rules.calendar import CalendarConfig, make_calendar
from citywatch.rules.cases.config import STAGES, CasesConfig
from citywatch.rules.cases.machine import Replayer
from citywatch.rules.cases.state import CaseState, apply, next_instant, tick

SH = ZoneInfo("Asia/Shanghai")
CFG = load_section(
    CasesConfig,
    {
        "warn_at": 0.75,
        "calendar": "working",
        "limits": {"disposal": "2h", "closing": {"default": "30m", "calendar": "natural"}},
    },
    "cases",
)
CAL = CalendarConfig()
RP = Replayer(CFG, {s: make_calendar(CFG.calendar_of(s), CAL) for s in STAGES})


def at(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()  # type: ignore[arg-type, misc]


def ev(event: str, ts: float, **kw: object) -> CaseEvent:
    return CaseEvent("321200", "C9", ts, event, ts, **kw)  # type: ignore[arg-type]


def dispatched_at(ts: float) -> CaseState:
    state = None
    for e in (ev("reported", ts - 60), ev("filed", ts - 30), ev("dispatched", ts)):
        state = apply(state, e, ts, RP).state
    assert state is not None
    return state


def test_dispatched_before_national_day_is_due_on_8_october() -> None:
    # 17:00 on Wednesday 30 September 2026, 2 h limit: 30 minutes that day, 90 on 8 October.
    state = dispatched_at(at(2026, 9, 30, 17, 0))
    disposal = state.derived.clocks["disposal"]
    assert disposal.instant_of(RP.cal("disposal"), disposal.limit) == at(2026, 10, 8, 10, 0)
    # Acceptance (1 h) turns yellow first: 45 minutes in, at 08:45 on 8 October.
    assert next_instant(state, RP) == at(2026, 10, 8, 8, 45)
    events = tick(state, at(2026, 10, 8, 10, 0), RP)
    red = [e for e in events if e.rule == "case_overdue" and e.labels["step"] == "disposal"]
    assert red and red[0].at == at(2026, 10, 8, 10, 0)


def test_lunch_break_is_not_counted() -> None:
    state = dispatched_at(at(2026, 11, 23, 11, 0))  # a Monday
    disposal = state.derived.clocks["disposal"]
    assert disposal.instant_of(RP.cal("disposal"), disposal.limit) == at(2026, 11, 23, 14, 30)


def test_adjusted_working_saturday_counts() -> None:
    state = dispatched_at(at(2026, 10, 9, 17, 0))  # Friday; Saturday 10 October is worked
    disposal = state.derived.clocks["disposal"]
    assert disposal.instant_of(RP.cal("disposal"), disposal.limit) == at(2026, 10, 10, 10, 0)


def test_suspension_over_a_weekend_and_a_natural_calendar_stage() -> None:
    start = at(2026, 11, 20, 16, 30)  # Friday
    state = dispatched_at(start)
    for e in (ev("suspended", at(2026, 11, 20, 17, 0)), ev("resumed", at(2026, 11, 23, 9, 0))):
        state = apply(state, e, e.ts, RP).state
    disposal = state.derived.clocks["disposal"]
    # 30 min before the suspension; 90 min after resuming on Monday at 09:00.
    assert disposal.instant_of(RP.cal("disposal"), disposal.limit) == at(2026, 11, 23, 10, 30)
    for e in (
        ev("resolved", at(2026, 11, 23, 10, 0)),
        ev("verified", at(2026, 11, 23, 17, 20)),
    ):
        state = apply(state, e, e.ts, RP).state
    closing = state.derived.clocks["closing"]
    # Closing counts natural time: due 30 minutes later, after working hours.
    assert closing.instant_of(RP.cal("closing"), closing.limit) == at(2026, 11, 23, 17, 50)
