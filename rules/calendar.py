"""Case-clock calendars: how much time counts between two instants.

Every case step has a time limit counted on one of two calendars. The
*natural* calendar counts wall-clock seconds. The *working* calendar counts
only work hours (``calendar.work_hours``, local time in
``calendar.timezone``) on working days: Monday to Friday, except China's
statutory public holidays, plus the adjusted working days (调休) that fall on
a weekend. Electronic supervision fires its lights at the instants computed
here, so both calendars work in Unix seconds and are exact to the second.

Working-day status of a local date, first match wins: ``extra_holidays`` →
off; ``extra_workdays`` → on; holiday table says off → off; table says
adjusted working day → on; otherwise Monday-Friday. A year the table does not
cover counts Monday-Friday, with one warning per year.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from citywatch.config import ConfigError

log = logging.getLogger(__name__)

_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMBEDDED = {"cn": "holidays-cn.json"}
_DAY_SECONDS = 86400

# One local date's work intervals as Unix seconds (sorted, disjoint) and their total.
_Day = tuple[tuple[tuple[float, float], ...], float]


@dataclasses.dataclass(frozen=True)
class CalendarConfig:
    """The ``calendar:`` config section.

    ``holidays`` is ``cn`` (the embedded table of China's statutory holidays
    and adjusted working days), ``none`` (plain Monday-Friday) or the path of
    a JSON/YAML file shaped like the embedded table::

        {"years": {"2026": {"holidays": ["2026-10-01", ...],
                            "workdays": ["2026-10-10", ...]}}}

    A relative path is taken from the working directory. ``extra_holidays``
    and ``extra_workdays`` are ISO dates for local arrangements; they
    override the table.
    """

    timezone: str = "Asia/Shanghai"
    work_hours: tuple[str, ...] = ("08:30-12:00", "13:30-17:30")
    holidays: str = "cn"
    extra_holidays: tuple[str, ...] = ()
    extra_workdays: tuple[str, ...] = ()

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming the first bad key under ``prefix``."""
        _compile(self, prefix)


class Calendar(Protocol):
    """Counts time for case limits; all instants are Unix seconds."""

    def add(self, start: float, seconds: float) -> float:
        """The earliest instant ``T >= start`` with ``seconds`` counted in ``[start, T]``.

        ``add(start, 0) == start``; a positive limit starting outside counted
        time runs from the next counted instant. Raises ``ValueError`` for a
        negative or non-finite ``seconds``.
        """
        ...

    def elapsed(self, start: float, end: float) -> float:
        """Counted seconds in ``[start, end]``; 0 when ``end <= start``."""
        ...


class NaturalCalendar:
    """Wall-clock time: every second counts, whatever the time zone does."""

    def add(self, start: float, seconds: float) -> float:
        """``start + seconds``; see :meth:`Calendar.add`."""
        _check_seconds(seconds)
        return float(start) + float(seconds)

    def elapsed(self, start: float, end: float) -> float:
        """``end - start``, or 0 when ``end <= start``."""
        return float(end) - float(start) if end > start else 0.0


class WorkingCalendar:
    """Work hours on working days; see the module docstring for the rules.

    Each local date's work intervals are computed once, in Unix seconds,
    and cached, so a deadline a few days out costs a few dict look-ups.
    """

    def __init__(self, cfg: CalendarConfig) -> None:
        rules = _compile(cfg, "calendar")
        self._tz = rules.tz
        self._hours = rules.hours
        self._table = rules.table
        self._extra_off = rules.extra_off
        self._extra_on = rules.extra_on
        self._warned: set[int] = set()
        self._days: dict[int, _Day] = {}

    def is_working_day(self, day: date) -> bool:
        """Whether the local date ``day`` has work hours."""
        if day in self._extra_off:
            return False
        if day in self._extra_on:
            return True
        table = self._table
        if table is not None:
            if day in table.off:
                return False
            if day in table.on:
                return True
            if day.year not in table.years and day.year not in self._warned:
                self._warned.add(day.year)
                log.warning("no holiday data for %d; counting Monday-Friday", day.year)
        return day.weekday() < 5

    def add(self, start: float, seconds: float) -> float:
        """See :meth:`Calendar.add`."""
        _check_seconds(seconds)
        if seconds == 0:
            return float(start)
        remaining = float(seconds)
        cursor = float(start)
        ordinal = self._ordinal(cursor)
        days = self._days
        while True:
            spans, total = days.get(ordinal) or self._build(ordinal)
            if spans and spans[0][0] >= cursor and total < remaining:
                remaining -= total
                cursor = spans[-1][1]
            else:
                for a, b in spans:
                    if b <= cursor:
                        continue
                    if a > cursor:
                        cursor = a
                    avail = b - cursor
                    if remaining <= avail:
                        return cursor + remaining
                    remaining -= avail
                    cursor = b
            ordinal += 1

    def elapsed(self, start: float, end: float) -> float:
        """See :meth:`Calendar.elapsed`."""
        if not end > start:
            return 0.0
        start = float(start)
        end = float(end)
        days = self._days
        counted = 0.0
        for ordinal in range(self._ordinal(start), self._ordinal(end) + 1):
            spans, total = days.get(ordinal) or self._build(ordinal)
            if spans and spans[0][0] >= start and spans[-1][1] <= end:
                counted += total
                continue
            for a, b in spans:
                lo = a if a > start else start
                hi = b if b < end else end
                if hi > lo:
                    counted += hi - lo
        return counted

    def _ordinal(self, instant: float) -> int:
        return datetime.fromtimestamp(instant, self._tz).toordinal()

    def _build(self, ordinal: int) -> _Day:
        day = date.fromordinal(ordinal)
        spans: list[tuple[float, float]] = []
        if self.is_working_day(day):
            midnight = datetime.combine(day, time(), tzinfo=self._tz)
            prev = -math.inf
            for lo, hi in self._hours:
                # Wall-clock arithmetic, then resolved to an instant: a DST
                # change never moves a local work hour, and intervals squeezed
                # by a fold are clipped so no second counts twice.
                a = max((midnight + timedelta(seconds=lo)).timestamp(), prev)
                b = (midnight + timedelta(seconds=hi)).timestamp()
                if b > a:
                    spans.append((a, b))
                    prev = b
        entry = (tuple(spans), sum(b - a for a, b in spans))
        self._days[ordinal] = entry
        return entry


def make_calendar(kind: str, cfg: CalendarConfig) -> Calendar:
    """The calendar for a limit's ``kind``: ``working`` or ``natural``."""
    if kind == "working":
        return WorkingCalendar(cfg)
    if kind == "natural":
        return NaturalCalendar()
    raise ValueError(f"unknown calendar kind {kind!r} (expected 'working' or 'natural')")


def _check_seconds(seconds: float) -> None:
    if not 0 <= seconds < math.inf:
        raise ValueError(f"a time limit must be finite and not negative, got {seconds!r}")


@dataclasses.dataclass(frozen=True)
class _HolidayTable:
    off: frozenset[date]
    on: frozenset[date]
    years: frozenset[int]


@dataclasses.dataclass(frozen=True)
class _Rules:
    tz: ZoneInfo
    hours: tuple[tuple[int, int], ...]
    table: _HolidayTable | None
    extra_off: frozenset[date]
    extra_on: frozenset[date]


def _compile(cfg: CalendarConfig, prefix: str) -> _Rules:
    try:
        tz = ZoneInfo(cfg.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{prefix}.timezone", f"unknown time zone {cfg.timezone!r} (e.g. Asia/Shanghai)"
        ) from None
    hours = _parse_hours(cfg.work_hours, f"{prefix}.work_hours")
    table: _HolidayTable | None = None
    if cfg.holidays != "none":
        try:
            table = _load_table(cfg.holidays)
        except ValueError as exc:
            raise ConfigError(f"{prefix}.holidays", str(exc)) from None
    extra_off = _parse_dates(cfg.extra_holidays, f"{prefix}.extra_holidays")
    extra_on = _parse_dates(cfg.extra_workdays, f"{prefix}.extra_workdays")
    both = sorted(extra_off & extra_on)
    if both:
        raise ConfigError(
            f"{prefix}.extra_workdays", f"{both[0].isoformat()} is also in extra_holidays"
        )
    return _Rules(tz, hours, table, extra_off, extra_on)


def _parse_hours(values: tuple[str, ...], key: str) -> tuple[tuple[int, int], ...]:
    if not values:
        raise ConfigError(key, "at least one interval like 08:30-12:00 is needed")
    hours: list[tuple[int, int]] = []
    for value in values:
        m = _INTERVAL_RE.match(value)
        if not m:
            raise ConfigError(key, f"expected an interval like 08:30-12:00, got {value!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        lo, hi = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if h1 > 23 or m1 > 59 or m2 > 59 or hi > _DAY_SECONDS:
            raise ConfigError(key, f"{value!r} is not within one day (00:00-24:00)")
        if hi <= lo:
            raise ConfigError(key, f"{value!r} ends before it starts")
        if hours and lo < hours[-1][1]:
            raise ConfigError(key, f"{value!r} overlaps or comes before the interval ahead of it")
        hours.append((lo, hi))
    return tuple(hours)


def _parse_date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an ISO date like 2026-10-09, got {value!r}")


def _parse_dates(values: tuple[str, ...], key: str) -> frozenset[date]:
    try:
        return frozenset(_parse_date(v) for v in values)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def holiday_table_bytes(source: str) -> bytes | None:
    """The raw holiday table behind ``calendar.holidays`` (None for ``none`` or unreadable)."""
    try:
        if source in _EMBEDDED:
            return (
                resources.files("citywatch.rules").joinpath("data", _EMBEDDED[source]).read_bytes()
            )
        if source == "none":
            return None
        return Path(source).read_bytes()
    except OSError:
        return None


def _load_table(source: str) -> _HolidayTable:
    if source in _EMBEDDED:
        ref = resources.files("citywatch.rules").joinpath("data", _EMBEDDED[source])
        return _parse_table(json.loads(ref.read_text(encoding="utf-8")), source)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        known = ", ".join(sorted([*_EMBEDDED, "none"]))
        raise ValueError(f"expected one of {known} or a .json/.yaml file, got {source!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{source} is not UTF-8 text") from None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise ValueError(f"{source} is not valid {kind}: {exc}") from None
    return _parse_table(data, source)


def _parse_table(data: Any, source: str) -> _HolidayTable:
    if not isinstance(data, Mapping) or not isinstance(data.get("years"), Mapping):
        raise ValueError(f"{source}: expected a mapping with a 'years' mapping")
    unknown = sorted(str(k) for k in data if k not in ("source", "years"))
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} (known: source, years)")
    off: set[date] = set()
    on: set[date] = set()
    years: set[int] = set()
    for year_key, entry in data["years"].items():
        where = f"{source}: years.{year_key}"
        if isinstance(year_key, bool) or not re.fullmatch(r"\d{4}", str(year_key)):
            raise ValueError(f"{where}: a year must be four digits")
        year = int(year_key)
        if not isinstance(entry, Mapping) or set(entry) - {"holidays", "workdays"}:
            raise ValueError(f"{where}: expected a mapping with 'holidays' and 'workdays' lists")
        for kind, into in (("holidays", off), ("workdays", on)):
            items = entry.get(kind) or []
            if not isinstance(items, list):
                raise ValueError(f"{where}.{kind}: expected a list of ISO dates")
            for item in items:
                try:
                    day = _parse_date(item)
                except ValueError as exc:
                    raise ValueError(f"{where}.{kind}: {exc}") from None
                if day.year != year:
                    raise ValueError(f"{where}.{kind}: {day.isoformat()} is not in {year}")
                into.add(day)
        years.add(year)
    clash = sorted(off & on)
    if clash:
        raise ValueError(f"{source}: {clash[0].isoformat()} is both a holiday and a workday")
    return _HolidayTable(frozenset(off), frozenset(on), frozenset(years))
