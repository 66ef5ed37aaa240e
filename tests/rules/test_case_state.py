"""The pure case logic: lights at the right instants, out-of-order and duplicate events."""

from __future__ import annotations

from citywatch.config import load_section
from citywatch.models import CaseEvent
from citywatch.rules.calendar import NaturalCalendar
from citywatch.rules.cases.config import STAGES, CasesConfig
from citywatch.rules.cases.machine import Replayer
from citywatch.rules.cases.state import CaseState, apply, next_instant, tick

T0 = 1_790_000_000.0
CFG = load_section(
    CasesConfig,
    {
        "warn_at": 0.8,
        "calendar": "natural",
        "limits": {
            "filing": "100s",
            "dispatch": "100s",
            "acceptance": "100s",
            "disposal": {"default": "1000s", "urgent": "200s", "categories": {"0101": "500s"}},
            "verification": "100s",
            "closing": "100s",
        },
    },
    "cases",
)
RP = Replayer(CFG, {s: NaturalCalendar() for s in STAGES})


def ev(event: str, ts: float, **kw: object) -> CaseEvent:
    return CaseEvent("321200", "C1", T0 + ts, event, T0 + ts, **kw)  # type: ignore[arg-type]


def run(
    *events: CaseEvent, now: float | None = None
) -> tuple[CaseState, list[tuple[str, str, str, float]]]:
    state: CaseState | None = None
    out = []
    for e in events:
        o = apply(state, e, e.ts if now is None else now, RP)
        assert o.refused is None, o.refused
        state = o.state
        out += [(a.rule, a.status, a.labels["step"], a.at - T0) for a in o.events]
    assert state is not None
    return state, out


def test_yellow_then_red_at_exact_instants_and_resolution() -> None:
    state, _ = run(ev("reported", 0))
    assert next_instant(state, RP) == T0 + 80
    assert tick(state, T0 + 79.999, RP) == []
    (yellow,) = tick(state, T0 + 80, RP)
    assert (yellow.rule, yellow.status, yellow.at) == ("case_warning", "firing", T0 + 80)
    assert next_instant(state, RP) == T0 + 100
    (red,) = tick(state, T0 + 100, RP)
    assert (red.rule, red.severity, red.values["deadline"]) == ("case_overdue", "red", T0 + 100)
    assert tick(state, T0 + 500, RP) == [], "never flagged twice"
    o = apply(state, ev("filed", 130), T0 + 130, RP)
    assert sorted((a.rule, a.status) for a in o.events) == [
        ("case_overdue", "resolved"),
        ("case_warning", "resolved"),
    ]
    overdue = next(a for a in o.events if a.rule == "case_overdue")
    assert overdue.values["elapsed"] == 130 and overdue.values["overdue_by"] == 30


def test_a_late_tick_emits_both_lights_at_their_own_instants() -> None:
    state, _ = run(ev("reported", 0))
    events = tick(state, T0 + 1000, RP)
    assert [(a.rule, a.at - T0) for a in events] == [("case_warning", 80), ("case_overdue", 100)]


def test_disposal_limit_by_urgency_and_category() -> None:
    base = [ev("reported", 0), ev("filed", 10), ev("dispatched", 20)]
    plain, _ = run(*base)
    assert plain.derived.clocks["disposal"].limit == 1000
    cat, _ = run(*base[:2], ev("dispatched", 20, category="0101"))
    assert cat.derived.clocks["disposal"].limit == 500
    urgent, _ = run(ev("reported", 0, urgent=True), *base[1:])
    assert urgent.derived.clocks["disposal"].limit == 200


def test_suspension_stops_the_clock_and_extension_adds_time() -> None:
    state, _ = run(
        ev("reported", 0),
        ev("filed", 10),
        ev("dispatched", 20),
        ev("accepted", 30),
        ev("suspended", 120),
        ev("resumed", 620),
        ev("extended", 700, extend=300.0),
    )
    disposal = state.derived.clocks["disposal"]
    assert disposal.limit == 1300
    # 100 s before the suspension, then from 620: due at 620 + 1200.
    assert next_instant(state, RP) == T0 + 620 + 0.8 * 1300 - 100
    assert disposal.instant_of(NaturalCalendar(), disposal.limit) == T0 + 1820
    assert state.derived.extensions == 1


def test_rework_starts_a_new_disposal_clock() -> None:
    state, _ = run(
        ev("reported", 0),
        ev("filed", 10),
        ev("dispatched", 20),
        ev("resolved", 400),
        ev("returned", 450),
        ev("resolved", 600),
        ev("verified", 650),
        ev("closed", 700),
    )
    d = state.derived
    assert d.reworks == 1 and d.status == "closed" and not state.open
    assert d.disposal_used == 380 + 150


def test_out_of_order_and_duplicate_events() -> None:
    a, _ = run(ev("reported", 0), ev("filed", 10), ev("dispatched", 20), ev("resolved", 300))
    b, _ = run(ev("resolved", 300), ev("dispatched", 20), ev("reported", 0), ev("filed", 10))
    assert a.derived.status == b.derived.status == "resolved"
    assert a.derived.clocks.keys() == b.derived.clocks.keys()
    assert a.derived.disposal_used == b.derived.disposal_used == 280
    o = apply(a, ev("resolved", 300), T0 + 301, RP)
    assert o.duplicate and o.events == []


def test_impossible_transitions_are_refused_and_state_kept() -> None:
    state, _ = run(ev("reported", 0), ev("filed", 10), ev("dispatched", 20), ev("closed", 50))
    for bad in (ev("filed", 60), ev("returned", 70), ev("resumed", 80), ev("reported", 90)):
        o = apply(state, bad, bad.ts, RP)
        assert o.refused and o.state.history == state.history and o.state.derived is state.derived
        assert o.state.pending[-1] == (bad.ts, bad.event, None)
    cancelled, _ = run(ev("reported", 0), ev("cancelled", 5))
    o = apply(cancelled, ev("filed", 10), T0 + 10, RP)
    assert o.refused and "cancelled" in o.refused
    assert not cancelled.open and cancelled.derived.clocks["filing"].stopped == T0 + 5


def test_red_while_suspended_stays_red_until_the_step_completes() -> None:
    state, events = run(ev("reported", 0), ev("suspended", 150), now=T0 + 150)
    assert [e[0] for e in events] == ["case_warning", "case_overdue"]
    assert next_instant(state, RP) is None
    _, events2 = run(ev("reported", 0), ev("suspended", 150), ev("filed", 200), now=T0 + 200)
    assert [(r, s) for r, s, _, _ in events2][-2:] == [
        ("case_warning", "resolved"),
        ("case_overdue", "resolved"),
    ]


def test_state_round_trips_through_its_document() -> None:
    state, _ = run(ev("reported", 0, category="0101", grid="321202001001001"), ev("filed", 10))
    tick(state, T0 + 200, RP)
    again = CaseState.from_json(state.to_json())
    assert again == state


def test_an_extension_while_red_lowers_the_light_and_it_can_go_red_again() -> None:
    state, _ = run(ev("reported", 0), ev("filed", 10), ev("dispatched", 20), ev("accepted", 30))
    fired = tick(state, T0 + 1100, RP)
    assert [(e.rule, e.labels["step"]) for e in fired] == [
        ("case_warning", "disposal"),
        ("case_overdue", "disposal"),
    ]
    o = apply(state, ev("extended", 1100, extend=5000.0), T0 + 1100, RP)
    assert [(e.rule, e.status) for e in o.events] == [
        ("case_overdue", "resolved"),
        ("case_warning", "resolved"),
    ]
    assert next_instant(o.state, RP) == T0 + 20 + 0.8 * 6000
    later = tick(o.state, T0 + 20 + 6000, RP)
    assert [(e.rule, e.at - T0) for e in later] == [("case_warning", 4820), ("case_overdue", 6020)]


def test_events_with_the_same_ts_apply_in_step_order() -> None:
    a, _ = run(ev("reported", 0), ev("filed", 10), ev("accepted", 20), ev("dispatched", 20))
    assert a.derived.status == "accepted" and a.derived.dispatched_at == T0 + 20
    b, _ = run(
        ev("reported", 0),
        ev("filed", 10),
        ev("dispatched", 20),
        ev("verified", 300),
        ev("resolved", 300),
    )
    assert b.derived.status == "verified" and b.derived.resolved_at == T0 + 300


def test_an_event_refused_for_want_of_an_earlier_one_applies_when_that_arrives() -> None:
    state, _ = run(ev("reported", 0), ev("filed", 10), ev("dispatched", 20))
    early = apply(state, ev("returned", 450), T0 + 450, RP)
    assert early.refused and early.state.pending == [(T0 + 450, "returned", None)]
    late = apply(early.state, ev("resolved", 400), T0 + 460, RP)
    assert late.refused is None and late.state.pending == []
    assert late.state.derived.status == "returned" and late.state.derived.reworks == 1
    again = CaseState.from_json(late.state.to_json())
    assert again == late.state


def test_a_late_first_disposal_round_is_remembered_after_rework() -> None:
    state, _ = run(
        ev("reported", 0),
        ev("filed", 10),
        ev("dispatched", 20),
        ev("resolved", 1500),
        ev("returned", 1550),
        ev("resolved", 1600),
    )
    d = state.derived
    assert d.disposal_late and d.disposal_overdue_at == T0 + 1020
    assert d.clocks["disposal"].on_time, "the second round was on time"


def test_fields_are_the_latest_by_ts_not_by_arrival() -> None:
    state, _ = run(
        ev("dispatched", 20, unit="unit-b"),
        ev("reported", 0, unit="intake", grid="321202001001001"),
    )
    assert state.info.unit == "unit-b" and state.info.grid == "321202001001001"
