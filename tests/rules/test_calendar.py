"""Case-clock calendars: working time with China's holidays and 调休, natural time, config."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from citywatch.config import ConfigError, load_section
from citywatch.rules.calendar import (
    CalendarConfig,
    NaturalCalendar,
    WorkingCalendar,
    make_calendar,
)

SH = ZoneInfo("Asia/Shanghai")
H = 3600.0


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: ZoneInfo = SH) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


def local(t: float, tz: ZoneInfo = SH) -> datetime:
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar(CalendarConfig())


# -- the spec's example and the 2026 National Day arrangement -------------------------


def test_spec_example_due_after_national_day(cal: WorkingCalendar) -> None:
    start = at(2026, 9, 30, 17, 0)
    due = cal.add(start, 2 * H)
    assert due == at(2026, 10, 8, 10, 0)
    assert cal.elapsed(start, at(2026, 9, 30, 23, 59)) == 30 * 60
    assert cal.elapsed(at(2026, 10, 8), due) == 90 * 60
    assert cal.elapsed(start, due) == 2 * H


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 9, 20), True),  # Sunday, 调休
        (date(2026, 9, 25), False),  # Friday, Mid-Autumn
        (date(2026, 9, 26), False),
        (date(2026, 9, 30), True),  # last working day before National Day
        *((date(2026, 10, d), False) for d in range(1, 8)),
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # Saturday, 调休
        (date(2026, 10, 11), False),
        (date(2026, 9, 19), False),  # an ordinary Saturday
        (date(2025, 10, 11), True),  # Saturday, 调休 of 2025
        (date(2025, 10, 8), False),
    ],
)
def test_working_days(cal: WorkingCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_embedded_table_covers_2025_and_2026() -> None:
    ref = resources.files("citywatch.rules").joinpath("data", "holidays-cn.json")
    data = json.loads(ref.read_text(encoding="utf-8"))
    assert sorted(data["years"]) == ["2025", "2026"]
    assert data["source"]


# -- add / elapsed on known spans (Asia/Shanghai, default hours) ----------------------

SPANS = [
    # (start, limit, due)
    ((2026, 3, 10, 11, 30), 1 * H, (2026, 3, 10, 14, 0)),  # across lunch
    ((2026, 3, 10, 11, 30), 0.5 * H, (2026, 3, 10, 12, 0)),  # due at the break, not after it
    ((2026, 3, 10, 12, 30), 1 * H, (2026, 3, 10, 14, 30)),  # started during lunch
    ((2026, 3, 10, 7, 0), 1 * H, (2026, 3, 10, 9, 30)),  # before work hours
    ((2026, 3, 10, 18, 0), 1 * H, (2026, 3, 11, 9, 30)),  # after work hours
    ((2026, 3, 10, 17, 0), 1 * H, (2026, 3, 11, 9, 0)),  # straddles the evening
    ((2026, 3, 14, 10, 0), 1 * H, (2026, 3, 16, 9, 30)),  # Saturday
    ((2026, 10, 3, 10, 0), 1 * H, (2026, 10, 8, 9, 30)),  # holiday
    ((2026, 10, 9, 17, 0), 1 * H, (2026, 10, 10, 9, 0)),  # 调休 Saturday counts
    ((2026, 9, 19, 10, 0), 1 * H, (2026, 9, 20, 9, 30)),  # 调休 Sunday counts
    ((2026, 9, 18, 17, 0), 1 * H, (2026, 9, 20, 9, 0)),
    ((2026, 9, 24, 17, 0), 1 * H, (2026, 9, 28, 9, 0)),  # 25th (Mid-Autumn) does not
    ((2026, 9, 30, 8, 30), 7.5 * H, (2026, 9, 30, 17, 30)),  # one whole working day
    ((2026, 9, 30, 8, 30), 7.5 * H + 1, (2026, 10, 8, 8, 30, 1)),
    ((2026, 9, 28, 9, 0), 4 * 7.5 * H, (2026, 10, 9, 9, 0)),  # Mon-Wed, then 8th, 9th
    ((2026, 2, 13, 17, 0), 1 * H, (2026, 2, 14, 9, 0)),  # Spring Festival 调休 Saturday
    ((2026, 2, 14, 17, 0), 1 * H, (2026, 2, 24, 9, 0)),  # then nine days off
]


def _instant(parts: tuple[float, ...]) -> float:
    y, mo, d, h, mi, *sec = (int(p) for p in parts)
    return at(y, mo, d, h, mi) + (sec[0] if sec else 0)


@pytest.mark.parametrize(("start", "limit", "due"), SPANS)
def test_add_and_elapsed_on_known_spans(
    cal: WorkingCalendar, start: tuple[int, ...], limit: float, due: tuple[int, ...]
) -> None:
    t0, t1 = _instant(start), _instant(due)
    assert local(cal.add(t0, limit)) == local(t1)
    assert cal.elapsed(t0, t1) == limit
    assert cal.elapsed(t0, t1 - 1) == limit - 1


def test_zero_and_negative(cal: WorkingCalendar) -> None:
    night = at(2026, 3, 10, 22, 0)
    assert cal.add(night, 0) == night
    assert cal.elapsed(night, night) == 0
    assert cal.elapsed(at(2026, 3, 10, 10), at(2026, 3, 10, 9)) == 0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            cal.add(night, bad)
        with pytest.raises(ValueError):
            NaturalCalendar().add(night, bad)


def test_long_limits(cal: WorkingCalendar) -> None:
    start = at(2026, 1, 5, 8, 30)
    for days in (1, 10, 30, 120):
        due = cal.add(start, days * 86400.0)
        assert cal.elapsed(start, due) == days * 86400.0
    # 30 working days of 7.5 h from Monday 2 March 2026: 25 up to Friday 3 April, Qingming
    # (4-6 April) off, then 7-10 and 13 April.
    assert local(cal.add(at(2026, 3, 2, 8, 30), 30 * 7.5 * H)) == datetime(2026, 4, 13, 17, 30)


# -- properties over 2026 --------------------------------------------------------------


def _reference_elapsed(cal: WorkingCalendar, start: float, end: float) -> float:
    """Independent of the cache and fast paths: every local date, every interval."""
    total = 0.0
    day = local(start).date() - timedelta(days=1)
    while day <= local(end).date() + timedelta(days=1):
        if cal.is_working_day(day):
            for lo, hi in ((8 * 60 + 30, 12 * 60), (13 * 60 + 30, 17 * 60 + 30)):
                a = at(day.year, day.month, day.day) + lo * 60
                b = at(day.year, day.month, day.day) + hi * 60
                total += max(0.0, min(b, end) - max(a, start))
        day += timedelta(days=1)
    return total


def test_random_sweep_properties(cal: WorkingCalendar) -> None:
    rng = random.Random(20260930)
    year_start, year_end = at(2026, 1, 1), at(2026, 12, 20)
    for _ in range(3000):
        start = rng.uniform(year_start, year_end)
        if rng.random() < 0.5:
            start = float(round(start))
        x = rng.choice([rng.uniform(0, 8 * H), float(rng.randrange(0, 5 * 86400, 60))])
        due = cal.add(start, x)
        assert due >= start
        assert cal.elapsed(start, due) == pytest.approx(x, abs=1e-6)
        assert _reference_elapsed(cal, start, due) == pytest.approx(x, abs=1e-6)
        if x > 0:  # earliest such instant
            assert cal.elapsed(start, max(start, due - 1e-3)) < x
        end = rng.uniform(start, start + 10 * 86400)
        counted = cal.elapsed(start, end)
        assert counted == pytest.approx(_reference_elapsed(cal, start, end), abs=1e-6)
        assert cal.add(start, counted) <= end + 1e-6
        y = rng.uniform(0, 8 * H)
        assert (cal.add(start, min(x, y)) <= cal.add(start, max(x, y))) is True
        later = start + rng.uniform(0, 2 * 86400)
        assert cal.add(start, x) <= cal.add(later, x)
        assert cal.elapsed(start, end) >= cal.elapsed(later, end)


# -- natural calendar and time zones ---------------------------------------------------


def test_natural_calendar() -> None:
    nat = make_calendar("natural", CalendarConfig())
    start = at(2026, 9, 30, 17, 0)
    assert nat.add(start, 2 * H) == start + 2 * H
    assert nat.elapsed(start, start + 90) == 90
    assert nat.elapsed(start, start - 90) == 0
    assert nat.add(start, 0) == start
    # 24 real hours across a DST change are 24 h, not "the same clock time tomorrow".
    berlin = ZoneInfo("Europe/Berlin")
    sat = at(2026, 3, 28, 12, 0, berlin)
    assert local(nat.add(sat, 24 * H), berlin) == datetime(2026, 3, 29, 13, 0)


def test_make_calendar_kinds() -> None:
    assert isinstance(make_calendar("working", CalendarConfig()), WorkingCalendar)
    assert isinstance(make_calendar("natural", CalendarConfig()), NaturalCalendar)
    with pytest.raises(ValueError, match="unknown calendar kind"):
        make_calendar("lunar", CalendarConfig())


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_working_calendar_in_zones_with_dst(zone: str) -> None:
    tz = ZoneInfo(zone)
    cal = WorkingCalendar(CalendarConfig(timezone=zone, holidays="none"))
    spring = {"Europe/Berlin": date(2026, 3, 29), "America/New_York": date(2026, 3, 8)}[zone]
    fri = spring - timedelta(days=2)
    due = cal.add(at(fri.year, fri.month, fri.day, 17, 0, tz), 1 * H)
    mon = spring + timedelta(days=1)
    assert local(due, tz) == datetime(mon.year, mon.month, mon.day, 9, 0)
    assert cal.elapsed(at(fri.year, fri.month, fri.day, 17, 0, tz), due) == 1 * H
    # Work hours are local wall-clock hours: the same 9 hours before and after the change.
    for d in (fri, mon):
        assert (
            cal.elapsed(at(d.year, d.month, d.day, 0, 0, tz), at(d.year, d.month, d.day, 23, 0, tz))
            == 7.5 * H
        )


def test_round_the_clock_hours_follow_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Sunday 29 March 2026 has 23 hours, Sunday 25 October 25; both are working days here.
    cfg_days = CalendarConfig(
        timezone="Europe/Berlin",
        work_hours=("00:00-24:00",),
        holidays="none",
        extra_workdays=("2026-03-29", "2026-10-25"),
    )
    cal = WorkingCalendar(cfg_days)
    for d, hours in ((date(2026, 3, 29), 23), (date(2026, 10, 25), 25)):
        midnight = at(d.year, d.month, d.day, 0, 0, berlin)
        nxt = d + timedelta(days=1)
        next_midnight = at(nxt.year, nxt.month, nxt.day, 0, 0, berlin)
        assert cal.elapsed(midnight, next_midnight) == hours * H
        assert cal.add(midnight, hours * H) == next_midnight
    assert cal.add(at(2026, 3, 29, 1, 30, berlin), 1 * H) == at(2026, 3, 29, 3, 30, berlin)


def test_hours_in_a_dst_gap_count_once() -> None:
    # 02:00-03:00 does not exist on 29 March 2026 in Berlin: both intervals land on
    # 03:00-04:00 CEST, which must count as one hour, not 1 h 45 min.
    berlin = ZoneInfo("Europe/Berlin")
    cfg = CalendarConfig(
        timezone="Europe/Berlin",
        work_hours=("02:00-02:45", "03:00-04:00"),
        holidays="none",
        extra_workdays=("2026-03-29",),
    )
    cal = WorkingCalendar(cfg)
    day = (at(2026, 3, 29, 0, 0, berlin), at(2026, 3, 30, 0, 0, berlin))
    assert cal.elapsed(*day) == 1 * H
    assert cal.add(day[0], 1 * H) == at(2026, 3, 29, 4, 0, berlin)


def test_zone_without_dst_other_than_shanghai() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    cal = WorkingCalendar(
        CalendarConfig(timezone="Asia/Tokyo", work_hours=("09:00-17:00",), holidays="none")
    )
    due = cal.add(at(2026, 10, 2, 16, 0, tokyo), 2 * H)  # a Friday
    assert local(due, tokyo) == datetime(2026, 10, 5, 10, 0)


# -- local arrangements, custom tables, years without data -----------------------------


def test_extra_holidays_and_workdays() -> None:
    cfg = CalendarConfig(
        extra_holidays=("2026-03-11",), extra_workdays=("2026-03-14", "2026-10-05")
    )
    cal = WorkingCalendar(cfg)
    assert not cal.is_working_day(date(2026, 3, 11))
    assert cal.is_working_day(date(2026, 3, 14))  # a Saturday
    assert cal.is_working_day(date(2026, 10, 5))  # overrides the national table
    assert local(cal.add(at(2026, 3, 10, 17, 0), 1 * H)) == datetime(2026, 3, 12, 9, 0)
    assert local(cal.add(at(2026, 3, 13, 17, 0), 1 * H)) == datetime(2026, 3, 14, 9, 0)


def test_custom_holidays_file_json_and_yaml(tmp_path: Path) -> None:
    table = {"years": {"2026": {"holidays": ["2026-03-11"], "workdays": ["2026-03-14"]}}}
    path = tmp_path / "local.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    yml = tmp_path / "local.yaml"
    yml.write_text("years:\n  2026:\n    holidays: [2026-03-11]\n    workdays: ['2026-03-14']\n")
    for source in (path, yml):
        cal = WorkingCalendar(CalendarConfig(holidays=str(source)))
        assert not cal.is_working_day(date(2026, 3, 11))
        assert cal.is_working_day(date(2026, 3, 14))
        assert cal.is_working_day(date(2026, 10, 5))  # not in this table: a Monday
        assert local(cal.add(at(2026, 3, 10, 17, 0), 1 * H)) == datetime(2026, 3, 12, 9, 0)


def test_plain_monday_to_friday_and_missing_years(caplog: pytest.LogCaptureFixture) -> None:
    plain = WorkingCalendar(CalendarConfig(holidays="none"))
    with caplog.at_level(logging.WARNING, logger="citywatch.rules.calendar"):
        assert plain.is_working_day(date(2026, 10, 1))  # a Thursday
        assert not plain.is_working_day(date(2026, 10, 10))
    assert not caplog.records

    cal = WorkingCalendar(CalendarConfig())
    with caplog.at_level(logging.WARNING, logger="citywatch.rules.calendar"):
        due = cal.add(at(2028, 3, 3, 17, 0), 1 * H)  # a Friday
        cal.add(at(2028, 5, 1, 9, 0), 20 * H)
    assert local(due) == datetime(2028, 3, 6, 9, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["no holiday data for 2028; counting Monday-Friday"]


# -- configuration ---------------------------------------------------------------------


def test_config_defaults_and_loading() -> None:
    cfg = load_section(
        CalendarConfig,
        {"work_hours": ["09:00-12:00", "14:00-18:00"], "extra_holidays": ["2026-03-11"]},
        "calendar",
    )
    assert cfg.work_hours == ("09:00-12:00", "14:00-18:00")
    assert cfg.timezone == "Asia/Shanghai" and cfg.holidays == "cn"
    assert load_section(CalendarConfig, None, "calendar") == CalendarConfig()


@pytest.mark.parametrize(
    ("raw", "key", "text"),
    [
        ({"timezone": "Asia/Beijing"}, "calendar.timezone", "unknown time zone"),
        ({"timezone": "../etc/passwd"}, "calendar.timezone", "unknown time zone"),
        ({"work_hours": []}, "calendar.work_hours", "at least one"),
        ({"work_hours": ["8:30 to 12:00"]}, "calendar.work_hours", "interval like"),
        ({"work_hours": ["08:30-25:00"]}, "calendar.work_hours", "within one day"),
        ({"work_hours": ["08:60-12:00"]}, "calendar.work_hours", "within one day"),
        ({"work_hours": ["12:00-08:30"]}, "calendar.work_hours", "ends before"),
        ({"work_hours": ["08:30-08:30"]}, "calendar.work_hours", "ends before"),
        ({"work_hours": ["08:30-12:00", "11:00-17:00"]}, "calendar.work_hours", "overlaps"),
        ({"work_hours": ["13:30-17:30", "08:30-12:00"]}, "calendar.work_hours", "overlaps"),
        ({"holidays": "us"}, "calendar.holidays", "expected one of cn, none"),
        ({"holidays": "/nonexistent/holidays.json"}, "calendar.holidays", "cannot read"),
        ({"extra_holidays": ["2026-02-30"]}, "calendar.extra_holidays", "ISO date"),
        ({"extra_workdays": ["10/10/2026"]}, "calendar.extra_workdays", "ISO date"),
        (
            {"extra_holidays": ["2026-03-11"], "extra_workdays": ["2026-03-11"]},
            "calendar.extra_workdays",
            "also in extra_holidays",
        ),
        ({"weekend": ["Sat"]}, "calendar.weekend", "unknown key"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_section(CalendarConfig, raw, "calendar")
    assert info.value.key == key
    assert text in info.value.problem


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "'years' mapping"),
        ('{"years": {"26": {}}}', "four digits"),
        ('{"years": {"2026": {"holidays": ["2025-10-01"]}}}', "not in 2026"),
        ('{"years": {"2026": {"holidays": "2026-10-01"}}}', "list of ISO dates"),
        ('{"years": {"2026": {"off": []}}}', "expected a mapping"),
        ('{"years": {"2026": {"holidays": ["2026-10-01"], "workdays": ["2026-10-01"]}}}', "both"),
        ('{"years": {}, "extra": 1}', "unknown keys"),
    ],
)
def test_bad_holidays_file(tmp_path: Path, content: str, text: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_section(CalendarConfig, {"holidays": str(path)}, "calendar")
    assert info.value.key == "calendar.holidays"
    assert text in info.value.problem


def test_working_calendar_checks_its_config() -> None:
    with pytest.raises(ConfigError) as info:
        WorkingCalendar(CalendarConfig(timezone="Mars/Olympus"))
    assert info.value.key == "calendar.timezone"


# -- cross-check with chinesecalendar and a speed sanity bound -------------------------


def test_table_agrees_with_chinesecalendar(cal: WorkingCalendar) -> None:
    chinese_calendar = pytest.importorskip(
        "chinese_calendar", reason="chinesecalendar (dev check) is not installed"
    )
    day, disagree = date(2025, 1, 1), []
    while day.year < 2027:
        if cal.is_working_day(day) != chinese_calendar.is_workday(day):
            disagree.append(day.isoformat())
        day += timedelta(days=1)
    assert disagree == []


def test_add_is_fast(cal: WorkingCalendar) -> None:
    rng = random.Random(7)
    starts = [rng.uniform(at(2026, 1, 1), at(2026, 12, 1)) for _ in range(5000)]
    for s in starts:  # warm the per-date cache, as restoring open cases would
        cal.add(s, 3 * 7.5 * H)
    t0 = time.perf_counter()
    for s in starts:
        cal.add(s, 8 * H)
    per_add = (time.perf_counter() - t0) / len(starts)
    assert per_add < 200e-6  # loose: measured ~2 µs; catches a pathological walk only
