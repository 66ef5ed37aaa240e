"""Case KPIs (CJ/T 292): the definitions, the store query, the reporter, InfluxDB end to end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from citywatch.clock import ManualClock
from citywatch.config import ConfigError, load_section
from citywatch.influx.schema import to_line, ts_ns
from citywatch.models import CaseEvent, CaseKpi, Record
from citywatch.rules.calendar import NaturalCalendar
from citywatch.rules.cases.config import STAGES, CasesConfig
from citywatch.rules.cases.kpi import (
    _ROWS_SQL,
    ALL_UNITS,
    KPI_NAMES,
    Kpi,
    KpiMetrics,
    KpiReporter,
    KpiRow,
    compute,
    kpi_rows,
    month_bounds,
    month_label,
)
from citywatch.rules.cases.machine import Replayer
from citywatch.rules.cases.state import CaseState, apply, next_instant, overdue_instants
from citywatch.rules.cases.store import CaseStore, Dues
from tests.helpers import Publisher, await_until, connected, settings_for
from tests.services import Influx, Mosquitto

T = TypeVar("T")
SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 1, tzinfo=SH).timestamp()
END = datetime(2026, 12, 1, tzinfo=SH).timestamp()
MID = START + 10 * 86400
CITY = "320700"


def row(**kw: Any) -> KpiRow:
    base: dict[str, Any] = dict.fromkeys(KpiRow._fields)
    base.update(city=CITY, unit="u-roads", reworks=0, extensions=0, late_steps=0)
    base.update(kw)
    return KpiRow(**base)


def closed(at: float = MID, **kw: Any) -> KpiRow:
    """A case filed and dispatched at ``at``, resolved and closed an hour later, on time."""
    times = {"filed_at": at, "dispatched_at": at, "resolved_at": at + 3000}
    times.update(closed_at=at + 3600, disposal_on_time=1, disposal_seconds=3000.0)
    return row(**{**times, **kw})


def only(kpis: list[Kpi], unit: str = "") -> Kpi:
    (k,) = [k for k in kpis if k.unit == unit]
    return k


# -- the definitions ------------------------------------------------------------------


def test_filed_counts_cases_filed_within_the_period() -> None:
    rows = [
        row(filed_at=START - 1),
        row(filed_at=START),
        row(filed_at=MID),
        row(filed_at=END - 0.001),
        row(filed_at=END),
        row(filed_at=None, dispatched_at=MID),
    ]
    assert only(compute(rows, START, END)).filed == 3


def test_due_to_close_is_closed_or_overdue_by_the_end() -> None:
    rows = [
        closed(),  # closed: due, closed
        row(filed_at=MID, overdue_at=MID + 60),  # open and overdue: due
        row(filed_at=MID, overdue_at=END + 60),  # open, not yet overdue: not due
        row(filed_at=MID),  # open, suspended (no overdue instant): not due
        closed(closed_at=END + 10, overdue_at=END - 10),  # closed late, after the end: due
        closed(closed_at=END + 10, overdue_at=None),  # closed after the end on time: not due
    ]
    k = only(compute(rows, START, END))
    assert (k.filed, k.due_to_close, k.closed) == (6, 3, 1)
    assert k.closing_rate == pytest.approx(1 / 3)


def test_cancelled_cases_count_only_while_not_yet_cancelled() -> None:
    rows = [
        row(filed_at=MID, overdue_at=MID + 60, cancelled_at=MID + 120),
        row(filed_at=MID, overdue_at=MID + 60, cancelled_at=END),  # cancelled after the end
        row(filed_at=MID, dispatched_at=MID, disposal_overdue_at=MID + 1, cancelled_at=MID + 9),
    ]
    k = only(compute(rows, START, END))
    assert (k.filed, k.due_to_close, k.closed, k.due_to_dispose) == (3, 1, 0, 0)
    assert k.closing_rate == 0.0
    assert k.on_time_disposal_rate is None


def test_closed_on_time_means_no_step_over_its_limit() -> None:
    rows = [closed(), closed(), closed(late_steps=1), closed(late_steps=2)]
    k = only(compute(rows, START, END))
    assert (k.due_to_close, k.closed, k.closed_on_time) == (4, 4, 2)
    assert k.on_time_closing_rate == 0.5


def test_disposal_counts_cases_dispatched_within_the_period() -> None:
    rows = [
        closed(),  # disposed on time
        closed(disposal_on_time=0, disposal_seconds=9000.0),  # disposed late
        # Filed last month, dispatched this month: disposal only.
        closed(filed_at=START - 600, dispatched_at=START + 5),
        # Dispatched, not resolved, past the disposal limit: due, not disposed.
        row(filed_at=MID, dispatched_at=MID, disposal_overdue_at=MID + 3600),
        # Dispatched, not resolved, within its limit at the end: not due.
        row(filed_at=MID, dispatched_at=MID, disposal_overdue_at=END),
        # Dispatched last month, resolved this month: last month's.
        closed(filed_at=START - 60, dispatched_at=START - 30),
        # Resolved after the end although overdue before it: due, not disposed.
        closed(resolved_at=END + 1, disposal_overdue_at=END - 1, closed_at=None),
    ]
    k = only(compute(rows, START, END))
    assert (k.due_to_dispose, k.disposed, k.disposed_on_time) == (5, 3, 2)
    assert k.on_time_disposal_rate == pytest.approx(2 / 5)
    assert k.mean_disposal_seconds == pytest.approx((3000 + 9000 + 3000) / 3)
    assert k.filed == 5


def test_rework_rate_over_disposed_and_extension_rate_over_due() -> None:
    rows = [
        closed(reworks=1),
        closed(reworks=2, extensions=1),
        closed(),
        closed(),
        row(filed_at=MID, dispatched_at=MID, disposal_overdue_at=MID + 1, extensions=3),
    ]
    k = only(compute(rows, START, END))
    assert (k.disposed, k.reworked, k.due_to_dispose, k.extended) == (4, 2, 5, 2)
    assert k.rework_rate == 0.5
    assert k.extension_rate == pytest.approx(2 / 5)


def test_rates_without_a_denominator_are_none() -> None:
    k = only(compute([row(filed_at=MID)], START, END))
    assert (k.filed, k.due_to_close, k.due_to_dispose, k.disposed) == (1, 0, 0, 0)
    rates = ("closing_rate", "on_time_closing_rate", "on_time_disposal_rate", "rework_rate")
    for name in (*rates, "extension_rate", "mean_disposal_seconds"):
        assert getattr(k, name) is None, name
    assert list(k.values()) == list(KPI_NAMES)
    assert Kpi(CITY, "", START, END).values()["closing_rate"] is None


def test_grouped_by_city_and_unit_with_a_total_per_city() -> None:
    rows = [
        closed(unit="u-roads"),
        closed(unit="u-roads", late_steps=1),
        closed(unit="u-water"),
        closed(unit=None),  # no responsible unit: the city total only
        closed(city="321200", unit="u-roads"),
    ]
    kpis = compute(rows, START, END)
    assert [(k.city, k.unit, k.closed) for k in kpis] == [
        ("320700", "", 4),
        ("320700", "u-roads", 2),
        ("320700", "u-water", 1),
        ("321200", "", 1),
        ("321200", "u-roads", 1),
    ]
    assert only(kpis[:3], "u-roads").on_time_closing_rate == 0.5
    assert all((k.start, k.end) == (START, END) for k in kpis)
    assert compute([], START, END) == []


def test_lianyungang_published_rates() -> None:
    # Lianyungang (连云港): 24932 cases due, 23974 closed (96.16%), 22345 on time (89.62%).
    on_time = [closed()] * 22345
    late = [closed(late_steps=1)] * (23974 - 22345)
    still_open = [row(filed_at=MID, overdue_at=MID + 60)] * (24932 - 23974)
    k = only(compute([*on_time, *late, *still_open], START, END))
    assert (k.due_to_close, k.closed, k.closed_on_time) == (24932, 23974, 22345)
    assert k.closing_rate is not None and k.on_time_closing_rate is not None
    assert round(k.closing_rate * 100, 2) == 96.16
    assert round(k.on_time_closing_rate * 100, 2) == 89.62


# -- months -----------------------------------------------------------------------------


def test_month_bounds_in_the_city_time_zone() -> None:
    # 16:30 UTC on 30 November is 00:30 on 1 December in Shanghai (+08:00).
    last_evening = datetime.fromisoformat("2026-11-30T16:30:00+00:00").timestamp()
    december = (END, datetime(2026, 12, 31, 16, tzinfo=ZoneInfo("UTC")).timestamp())
    assert month_bounds(last_evening, "Asia/Shanghai") == december
    assert month_label(last_evening, "Asia/Shanghai") == "2026-12"
    assert (
        month_bounds(last_evening, "UTC")[0]
        == datetime.fromisoformat("2026-11-01T00:00Z").timestamp()
    )
    assert month_label(last_evening, "UTC") == "2026-11"
    assert month_bounds(END - 1, "Asia/Shanghai") == (START, END)
    assert month_bounds(START, "Asia/Shanghai") == (START, END)
    new_year = datetime(2026, 12, 31, 23, 59, tzinfo=SH).timestamp()
    start, end = month_bounds(new_year, "Asia/Shanghai")
    assert (start, end) == (END, datetime(2027, 1, 1, tzinfo=SH).timestamp())
    assert datetime.fromtimestamp(start, SH).isoformat() == "2026-12-01T00:00:00+08:00"


# -- the store ---------------------------------------------------------------------------

CFG = load_section(
    CasesConfig,
    {
        "calendar": "natural",
        "limits": {
            "filing": "100s",
            "dispatch": "100s",
            "acceptance": "100s",
            "disposal": "1000s",
            "verification": "100s",
            "closing": "100s",
        },
    },
    "cases",
)
RP = Replayer(CFG, {s: NaturalCalendar() for s in STAGES})


def case(city: str, case_id: str, unit: str, *steps: tuple[str, float]) -> CaseState:
    state: CaseState | None = None
    for event, at in steps:
        ev = CaseEvent(city, case_id, MID + at, event, MID + at, unit=unit)
        out = apply(state, ev, ev.ts, RP)
        assert out.refused is None, out.refused
        state = out.state
    assert state is not None
    return state


LIFE = (("reported", 0), ("filed", 10), ("dispatched", 20), ("resolved", 100))
CLOSED = (*LIFE, ("verified", 110), ("closed", 120))


def fill(store: CaseStore, *states: CaseState) -> None:
    store.save(
        (s, next_instant(s, RP) if s.open else None, Dues(*overdue_instants(s, RP))) for s in states
    )


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    store = CaseStore(tmp_path / "cases.sqlite")
    fill(
        store,
        case(CITY, "A", "u-roads", *CLOSED),
        case(CITY, "B", "u-water", ("reported", 0), ("filed", 10), ("dispatched", 20)),
        case(CITY, "C", "u-roads", ("reported", 0), ("filed", 10), ("cancelled", 15)),
        case("321200", "D", "u-roads", ("reported", 0), ("filed", 10)),
        case(CITY, "E", "u-roads", *CLOSED[:2]),  # filed last month, see below
        case(CITY, "F", "u-water", ("reported", 0)),  # reported, not filed
    )
    # E was filed a month earlier: outside the period.
    store.db.execute("UPDATE cases SET filed_at = ? WHERE case_id = 'E'", (START - 86400,))
    return store


def test_kpi_rows_from_real_case_states(store: CaseStore) -> None:
    # A, B and C of the city, D of another; not E (filed last month), nor F (not filed).
    assert len(kpi_rows(store.db, START, END)) == 4
    a = next(r for r in kpi_rows(store.db, START, END, CITY, "u-roads") if r.closed_at)
    assert (a.filed_at, a.dispatched_at, a.resolved_at) == (MID + 10, MID + 20, MID + 100)
    assert (a.closed_at, a.late_steps, a.disposal_on_time) == (MID + 120, 0, 1)
    assert a.disposal_seconds == 80 and a.disposal_overdue_at is None
    (b,) = kpi_rows(store.db, START, END, CITY, "u-water")
    assert b.resolved_at is None and b.disposal_overdue_at == MID + 20 + 1000
    assert b.overdue_at == MID + 20 + 100  # acceptance comes first
    k = only(compute(kpi_rows(store.db, START, END, CITY), START, END))
    assert (k.filed, k.due_to_close, k.closed, k.closed_on_time) == (3, 2, 1, 1)
    assert (k.due_to_dispose, k.disposed, k.disposed_on_time) == (2, 1, 1)


def test_kpi_rows_filters_by_city_and_unit(store: CaseStore) -> None:
    def ids(**kw: Any) -> list[tuple[str, str | None]]:
        return sorted((r.city, r.unit) for r in kpi_rows(store.db, START, END, **kw))

    assert ids() == [(CITY, "u-roads"), (CITY, "u-roads"), (CITY, "u-water"), ("321200", "u-roads")]
    assert ids(city="321200") == [("321200", "u-roads")]
    assert ids(unit="u-roads") == [("320700", "u-roads")] * 2 + [("321200", "u-roads")]
    assert ids(city=CITY, unit="u-water") == [("320700", "u-water")]
    assert ids(city="999999") == []
    assert [r.filed_at for r in kpi_rows(store.db, START - 86400, START)] == [START - 86400]


def test_kpi_rows_is_safe_from_injection(store: CaseStore) -> None:
    assert kpi_rows(store.db, START, END, unit="x' OR '1'='1") == []
    assert kpi_rows(store.db, START, END, city="x' OR '1'='1") == []
    assert kpi_rows(store.db, START, END, city=CITY, unit="u-roads' --") == []


def test_kpi_rows_searches_indexes_not_the_whole_table(tmp_path: Path) -> None:
    # 100,000 stored cases stay fast only if no query reads the table from end to end.
    store = CaseStore(tmp_path / "plan.sqlite")
    for city in (None, CITY):
        params = {"city": city, "unit": None, "start": START, "end": END}
        plan = [r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + _ROWS_SQL, params)]
        assert not [p for p in plan if p.startswith("SCAN") and "cases" in p], plan
        assert any("cases_filed (city=? AND filed_at>? AND filed_at<?)" in p for p in plan), plan
        assert any("cases_dispatched (city=? AND dispatched_at>?" in p for p in plan), plan


# -- the reporter ------------------------------------------------------------------------


class Recorder:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []

    async def write(self, records: Sequence[Record]) -> None:
        self.batches.append(list(records))


def kpi_of(batch: list[Record]) -> dict[tuple[str, str, str], CaseKpi]:
    return {(r.period, r.city, r.unit): r for r in batch if isinstance(r, CaseKpi)}


async def test_reporter_closes_out_last_month_then_reports_this_one(store: CaseStore) -> None:
    fill(store, case(CITY, "G", "u-roads", *CLOSED))
    # G was filed and closed in October: last month when the reporter starts.
    store.db.execute(
        "UPDATE cases SET filed_at = ?, dispatched_at = ?, resolved_at = ?, closed_at = ? "
        "WHERE case_id = 'G'",
        (START - 7200, START - 7000, START - 6000, START - 5000),
    )

    async def query(fn: Callable[[CaseStore], T]) -> T:
        return fn(store)

    clock = ManualClock(MID + 7200)
    registry = CollectorRegistry()
    sink = Recorder()
    reporter = KpiReporter(query, "Asia/Shanghai", 60, clock, sink, KpiMetrics(registry))

    def gauge(kpi: str, unit: str = ALL_UNITS, city: str = CITY) -> float | None:
        labels = {"city": city, "unit": unit, "kpi": kpi}
        return registry.get_sample_value("citywatch_case_kpi", labels)

    current = await reporter.report()
    first = kpi_of(sink.batches[-1])
    october = first["2026-10", CITY, ALL_UNITS]
    assert (october.start, october.as_of) == (month_bounds(START - 1, "Asia/Shanghai")[0], START)
    assert october.values["closed"] == 1 and october.values["closing_rate"] == 1.0
    november = first["2026-11", CITY, ALL_UNITS]
    assert (november.start, november.as_of) == (START, MID + 7200)
    assert november.values["filed"] == 3 and november.values["closing_rate"] == 0.5
    assert "rework_rate" in november.values and "extension_rate" in november.values
    other = first["2026-11", "321200", ALL_UNITS].values  # D: filed, overdue for dispatch
    assert other["closing_rate"] == 0.0 and "on_time_disposal_rate" not in other
    assert {k.unit for k in current if k.city == CITY} == {"", "u-roads", "u-water"}
    assert gauge("closing_rate") == 0.5 and gauge("filed", "u-water") == 1
    assert gauge("closing_rate", city="321200") == 0
    assert gauge("rework_rate", city="321200") is None, "a rate without a denominator"

    await reporter.report()
    assert {k[0] for k in kpi_of(sink.batches[-1])} == {"2026-11"}

    clock.set(END + 60)  # December: November is closed out, December has no cases yet
    assert await reporter.report() == []
    last = kpi_of(sink.batches[-1])
    assert {k[0] for k in last} == {"2026-11"}
    assert last["2026-11", CITY, ALL_UNITS].as_of == END
    assert gauge("filed") is None, "last month's series are gone"


async def test_reporter_keeps_running_after_a_failed_round() -> None:
    calls = 0

    async def query(fn: Callable[[CaseStore], T]) -> T:
        nonlocal calls
        calls += 1
        raise RuntimeError("disk on fire")

    reporter = KpiReporter(query, "Asia/Shanghai", 0.01, ManualClock(MID))
    task = asyncio.create_task(reporter.run())
    try:
        await await_until(lambda: calls >= 3, timeout=5, what="three rounds")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_kpi_interval_is_a_positive_duration() -> None:
    assert CasesConfig().kpi_interval == 60
    assert load_section(CasesConfig, {"kpi_interval": "200ms"}, "cases").kpi_interval == 0.2
    with pytest.raises(ConfigError, match=r"cases\.kpi_interval"):
        load_section(CasesConfig, {"kpi_interval": "0s"}, "cases")


def test_case_kpi_line() -> None:
    r = CaseKpi(CITY, ALL_UNITS, "2026-11", START, MID, {"filed": 3, "closing_rate": 0.5})
    assert to_line(r) == (
        f"case_kpi,city={CITY},period=2026-11,unit=_all "
        f"as_of={MID!r},filed=3i,closing_rate=0.5 {ts_ns(START)}"
    )


# -- end to end ----------------------------------------------------------------------------


async def test_kpis_reach_influxdb_and_each_recomputation_replaces_the_point(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    cases = {"kpi_interval": "200ms", "calendar": "natural", "limits": {"disposal": "10s"}}
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path, cases=cases)
    tz = settings.calendar.timezone
    # The events and the rule's (frozen) clock lie in one month, whenever the test runs.
    real = time.time()
    t0 = max(real - 60, month_bounds(real, tz)[0])
    period = month_label(t0, tz)

    def send(case_id: str, unit: str, *steps: tuple[str, float]) -> list[tuple[str, Any]]:
        topic = f"citywatch/{CITY}/cases/{case_id}/events"
        return [(topic, {"ts": t0 + at, "event": e, "unit": unit}) for e, at in steps]

    def points() -> dict[str, dict[str, Any]]:
        found = influx.points("case_kpi", influx_db) if influx.count("case_kpi", influx_db) else []
        return {p["unit"]: p for p in found if p["period"] == period}

    def gauge(kpi: str) -> float | None:
        labels = {"city": CITY, "unit": ALL_UNITS, "kpi": kpi}
        return svc.registry.get_sample_value("citywatch_case_kpi", labels)

    life = [("reported", 0), ("filed", 5), ("dispatched", 10), ("resolved", 15)]
    async with connected(settings, ["collector", "rules"], clock=ManualClock(t0 + 60)) as svc:
        with Publisher(mosquitto.port) as pub:
            # K1 closed on time; K2 dispatched 50 s before the clock, past its 10 s limit.
            pub.send_all(send("K1", "u-roads", *life, ("verified", 20), ("closed", 25)))
            pub.send_all(send("K2", "u-water", *life[:3]))
        await await_until(
            lambda: points().get(ALL_UNITS, {}).get("due_to_dispose") == 2, what="KPIs stored"
        )
        total = points()[ALL_UNITS]
        assert (total["filed"], total["due_to_close"], total["closed"]) == (2, 2, 1)
        assert total["closing_rate"] == 0.5 and total["on_time_disposal_rate"] == 0.5
        assert total["time"] == ts_ns(month_bounds(t0, tz)[0])
        assert total["as_of"] == t0 + 60
        assert set(points()) == {ALL_UNITS, "u-roads", "u-water"}
        assert points()["u-water"]["disposed"] == 0
        assert points()["u-water"].get("rework_rate") is None, "no denominator, no field"
        assert gauge("closing_rate") == 0.5

        with Publisher(mosquitto.port) as pub:
            pub.send_all(send("K2", "u-water", ("resolved", 55), ("verified", 56), ("closed", 57)))
        await await_until(
            lambda: points().get(ALL_UNITS, {}).get("closed") == 2, what="KPIs recomputed"
        )
        total = points()[ALL_UNITS]
        assert (total["closing_rate"], total["on_time_closing_rate"]) == (1.0, 0.5)
        assert influx.count("case_kpi", influx_db) == 3, "one point per city and unit"
        assert gauge("closing_rate") == 1.0
