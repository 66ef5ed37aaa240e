"""Case KPIs of the national evaluation standard (CJ/T 292 数字化城市管理信息系统 绩效评价).

Per city, per responsible unit and per period ``[start, end)``, from the
``cases`` table of :mod:`rules.cases.store`. A case counts where its instants
put it at ``end``: filed, dispatched, resolved, closed or cancelled before
``end``, or overdue by then (``overdue_at``, ``disposal_overdue_at``). Its
counters (reworks, extensions, late steps, disposal on time) are those of its
latest state.

:func:`compute` is pure; :func:`kpi_rows` reads the rows it needs; the
:class:`KpiReporter` recomputes the current month every ``cases.kpi_interval``
for Prometheus and InfluxDB (measurement ``case_kpi``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from citywatch.clock import Clock
from citywatch.metrics import MetricSet
from citywatch.models import CaseKpi
from citywatch.rules.cases.store import CaseStore
from citywatch.sink import Sink

log = logging.getLogger(__name__)
T = TypeVar("T")

ALL_UNITS = "_all"
"""The ``unit`` label and tag of a city's total."""

KPI_NAMES = (
    "filed",
    "due_to_close",
    "closed",
    "closed_on_time",
    "closing_rate",
    "on_time_closing_rate",
    "due_to_dispose",
    "disposed",
    "disposed_on_time",
    "on_time_disposal_rate",
    "rework_rate",
    "extension_rate",
    "mean_disposal_seconds",
)
"""The exported KPIs: the values of the Prometheus ``kpi`` label, the ``case_kpi`` fields."""


class KpiRow(NamedTuple):
    """The columns of one case that the KPIs are computed from (see ``store.SCHEMA``)."""

    city: str
    unit: str | None
    filed_at: float | None
    dispatched_at: float | None
    resolved_at: float | None
    closed_at: float | None
    cancelled_at: float | None
    reworks: int
    extensions: int
    late_steps: int
    disposal_on_time: int | None
    disposal_seconds: float | None
    overdue_at: float | None
    disposal_overdue_at: float | None


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Kpi:
    """The case KPIs of one city (``unit == ""``: all its units) or one unit, over ``[start, end)``.

    - ``filed`` 立案数: filed in the period.
    - ``due_to_close`` 应结案数: filed in the period, not cancelled before ``end``,
      and closed or overdue (should have been closed) before ``end``.
    - ``closed`` 结案数: of those, closed before ``end``; ``closed_on_time`` 按期结案数:
      closed with no step over its limit.
    - ``due_to_dispose`` 应处置数: dispatched in the period, not cancelled before
      ``end``, and resolved or past the disposal limit before ``end``.
    - ``disposed`` 处置数: of those, resolved before ``end``; ``disposed_on_time``
      按期处置数: disposed within the disposal limit.
    - ``reworked``: disposed cases sent back at least once (返工);
      ``extended``: due-to-dispose cases granted an extension (延期).
    - ``disposal_seconds``: counted disposal time summed over the disposed cases.
    """

    city: str
    unit: str
    start: float
    end: float
    filed: int = 0
    due_to_close: int = 0
    closed: int = 0
    closed_on_time: int = 0
    due_to_dispose: int = 0
    disposed: int = 0
    disposed_on_time: int = 0
    reworked: int = 0
    extended: int = 0
    disposal_seconds: float = 0.0

    @property
    def closing_rate(self) -> float | None:
        """结案率 = closed / due_to_close; None without cases due."""
        return _ratio(self.closed, self.due_to_close)

    @property
    def on_time_closing_rate(self) -> float | None:
        """按期结案率 = closed_on_time / due_to_close; None without cases due."""
        return _ratio(self.closed_on_time, self.due_to_close)

    @property
    def on_time_disposal_rate(self) -> float | None:
        """按期处置率 = disposed_on_time / due_to_dispose; None without cases due."""
        return _ratio(self.disposed_on_time, self.due_to_dispose)

    @property
    def rework_rate(self) -> float | None:
        """返工率 = reworked / disposed; None without disposed cases."""
        return _ratio(self.reworked, self.disposed)

    @property
    def extension_rate(self) -> float | None:
        """延期率 = extended / due_to_dispose; None without cases due."""
        return _ratio(self.extended, self.due_to_dispose)

    @property
    def mean_disposal_seconds(self) -> float | None:
        """平均处置时长: counted disposal seconds per disposed case; None without any."""
        return _ratio(self.disposal_seconds, self.disposed)

    def values(self) -> dict[str, int | float | None]:
        """Every KPI of :data:`KPI_NAMES` by name: counts as int, rates and seconds as float."""
        return {name: getattr(self, name) for name in KPI_NAMES}


class _Counted(NamedTuple):
    """What one case adds to each count of :class:`Kpi` (the same names)."""

    filed: bool
    due_to_close: bool
    closed: bool
    closed_on_time: bool
    due_to_dispose: bool
    disposed: bool
    disposed_on_time: bool
    reworked: bool
    extended: bool
    disposal_seconds: float


def _count(r: KpiRow, start: float, end: float) -> _Counted:
    # Plain comparisons, no helpers: this runs for every case of the month each time.
    live = r.cancelled_at is None or r.cancelled_at >= end
    closed_by_end = r.closed_at is not None and r.closed_at < end
    resolved_by_end = r.resolved_at is not None and r.resolved_at < end
    overdue = r.overdue_at is not None and r.overdue_at < end
    disposal_overdue = r.disposal_overdue_at is not None and r.disposal_overdue_at < end
    filed = r.filed_at is not None and start <= r.filed_at < end
    dispatched = r.dispatched_at is not None and start <= r.dispatched_at < end
    due_close = filed and live and (closed_by_end or overdue)
    due_dispose = dispatched and live and (resolved_by_end or disposal_overdue)
    closed = due_close and closed_by_end
    disposed = due_dispose and resolved_by_end
    return _Counted(
        filed,
        due_close,
        closed,
        closed and r.late_steps == 0,
        due_dispose,
        disposed,
        disposed and r.disposal_on_time == 1,
        disposed and r.reworks > 0,
        due_dispose and r.extensions > 0,
        # The store sets disposal_seconds whenever it sets resolved_at.
        (r.disposal_seconds or 0.0) if disposed else 0.0,
    )


def compute(rows: Iterable[KpiRow], start: float, end: float) -> list[Kpi]:
    """The KPIs of ``[start, end)`` per (city, unit), plus each city's total (unit ``""``).

    Pure. Cases without a unit count in their city's total only. Sorted by city,
    the total first.
    """
    groups: dict[tuple[str, str], list[_Counted]] = {}
    for r in rows:
        counted = _count(r, start, end)
        groups.setdefault((r.city, ""), []).append(counted)
        if r.unit:
            groups.setdefault((r.city, r.unit), []).append(counted)
    out = []
    for (city, unit), group in sorted(groups.items()):
        columns = zip(*group, strict=True)
        sums: dict[str, Any] = {
            name: sum(col) for name, col in zip(_Counted._fields, columns, strict=True)
        }
        out.append(Kpi(city, unit, start, end, **sums))
    return out


# SQLite has no skip-scan without ANALYZE statistics, so without a city the
# (city, filed_at) and (city, dispatched_at) indexes would go unused and every
# stored case be read. The recursive ``cities`` walks the distinct cities along
# the index (a loose index scan, one seek per city); the join then searches
# both indexes per city (MULTI-INDEX OR).
_ROWS_SQL = """
WITH RECURSIVE cities(city) AS (
    SELECT coalesce(:city, (SELECT min(city) FROM cases))
    UNION ALL
    SELECT (SELECT min(c.city) FROM cases AS c WHERE c.city > cities.city)
    FROM cities WHERE :city IS NULL AND cities.city IS NOT NULL
)
SELECT cases.city, unit, filed_at, dispatched_at, resolved_at, closed_at, cancelled_at,
    reworks, extensions, late_steps, disposal_on_time, disposal_seconds, overdue_at,
    disposal_overdue_at
FROM cities JOIN cases ON cases.city = cities.city
WHERE ((filed_at >= :start AND filed_at < :end)
        OR (dispatched_at >= :start AND dispatched_at < :end))
    AND (:unit IS NULL OR unit = :unit)
"""


def kpi_rows(
    db: sqlite3.Connection,
    start: float,
    end: float,
    city: str | None = None,
    unit: str | None = None,
) -> list[KpiRow]:
    """The cases filed or dispatched in ``[start, end)``, of ``city`` and ``unit`` if given."""
    params = {"city": city, "unit": unit, "start": start, "end": end}
    return [KpiRow(*row) for row in db.execute(_ROWS_SQL, params)]


def month_bounds(t: float, tz: str) -> tuple[float, float]:
    """The calendar month containing ``t`` in time zone ``tz``, as ``[start, end)`` Unix seconds."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(t, zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    year, month = divmod(local.year * 12 + local.month, 12)  # the next month, 0-based
    end = datetime(year, month + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


def month_label(t: float, tz: str) -> str:
    """``YYYY-MM`` of the month containing ``t`` in time zone ``tz``."""
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m")


class StoreQuery(Protocol):
    """Runs ``fn`` with the case store on the store's own thread; its result."""

    def __call__(self, fn: Callable[[CaseStore], T], /) -> Awaitable[T]: ...


class KpiMetrics(MetricSet):
    """``citywatch_case_kpi{city, unit, kpi}``: this month's KPIs so far."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.kpi = self.gauge(
            "citywatch_case_kpi",
            "Case KPIs (CJ/T 292) of the current month so far, per city and responsible unit "
            "(unit _all: the whole city); rates as fractions, absent without a denominator",
            ["city", "unit", "kpi"],
        )
        self._shown: set[tuple[str, str, str]] = set()

    def show(self, kpis: Iterable[Kpi]) -> None:
        """Set the gauges to ``kpis``; drop the series of anything no longer among them."""
        shown = set()
        for k in kpis:
            unit = k.unit or ALL_UNITS
            for name, value in k.values().items():
                if value is not None:
                    labels = (k.city, unit, name)
                    self.kpi.labels(*labels).set(value)
                    shown.add(labels)
        for labels in self._shown - shown:
            self.kpi.remove(*labels)
        self._shown = shown


class KpiReporter:
    """Recomputes the current month's KPIs every ``interval`` seconds, and once at start.

    Each recomputation sets :class:`KpiMetrics` and writes one ``case_kpi``
    point per city and unit, timestamped at the month's start so that it
    replaces the previous one. The first recomputation after start-up or in a
    new month also writes the previous month over its whole span, so the last
    events of a month are not left out of its final figures.
    """

    def __init__(
        self,
        query: StoreQuery,
        tz: str,
        interval: float,
        clock: Clock,
        sink: Sink | None = None,
        metrics: KpiMetrics | None = None,
    ) -> None:
        ZoneInfo(tz)  # fail now on an unknown zone, not in the background task
        self.query = query
        self.tz = tz
        self.interval = interval
        self.clock = clock
        self.sink = sink
        self.metrics = metrics
        self._month: float | None = None

    async def run(self) -> None:
        """Recompute until cancelled; a failed round is logged and retried at the next."""
        while True:
            try:
                await self.report()
            except Exception:
                log.exception("case KPIs not computed")
            await asyncio.sleep(self.interval)

    async def report(self) -> list[Kpi]:
        """Recompute now; return the current month's KPIs."""
        now = self.clock.now()
        start, _ = month_bounds(now, self.tz)
        periods = [(start, now)]
        if self._month != start:
            previous, _ = month_bounds(start - 1, self.tz)
            periods.insert(0, (previous, start))

        def read(store: CaseStore) -> list[list[KpiRow]]:
            return [kpi_rows(store.db, s, e) for s, e in periods]

        found = await self.query(read)
        # A big city's month is some 25,000 cases: a tenth of a second, off the event loop.
        results = await asyncio.to_thread(
            lambda: [compute(rows, s, e) for rows, (s, e) in zip(found, periods, strict=True)]
        )
        current = results[-1]
        if self.metrics is not None:
            self.metrics.show(current)
        if self.sink is not None:
            records = [self._record(k) for kpis in results for k in kpis]
            if records:
                await self.sink.write(records)
        self._month = start
        return current

    def _record(self, k: Kpi) -> CaseKpi:
        values = {n: v for n, v in k.values().items() if v is not None}
        period = month_label(k.start, self.tz)
        return CaseKpi(k.city, k.unit or ALL_UNITS, period, k.start, k.end, values)
