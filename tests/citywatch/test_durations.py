"""The one Chinese duration formatter, and that every text people read goes through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from citywatch.alerting.summary import summary
from citywatch.durations import duration_zh
from tests.alerting.alerts import alert

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "不到 1 分钟"),
        (0, "不到 1 分钟"),
        (59.9, "不到 1 分钟"),
        (60, "1 分钟"),
        (3599, "59 分钟"),
        (3600, "1 小时 0 分"),
        (2 * 3600 + 5 * 60 + 59, "2 小时 5 分"),
        (86400 - 1, "23 小时 59 分"),
        (86400, "1 天 0 小时"),
        (3 * 86400 + 2 * 3600 + 59 * 60, "3 天 2 小时"),
    ],
)
def test_whole_minutes_rounded_down_in_the_two_largest_units(seconds: float, text: str) -> None:
    assert duration_zh(seconds) == text


def test_alert_summaries_use_it() -> None:
    now = 1_790_000_000.0
    overdue = alert(
        rule="case_overdue",
        severity="red",
        subject_kind="case",
        subject="C-1024",
        starts_at=now - 3600,
        opened_at=now,
        labels={"step": "disposal"},
        values={"deadline": now - 2 * 3600 - 5 * 60},
    )
    assert summary(overdue, "red", "firing", now) == "【红灯】案件 C-1024 处置超时 2 小时 5 分"
    idle = alert(starts_at=now - 12 * 60, opened_at=now)
    assert summary(idle, "yellow", "firing", now) == "【黄灯】off-7 原地停留 12 分钟"


def test_no_other_module_formats_a_chinese_duration() -> None:
    # A number followed by a unit word in an f-string is a duration written by hand.
    by_hand = re.compile(r"\}\s*(天|小时|分)")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("citywatch", "collectors", "rules", "alerting", "api")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.name != "durations.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if by_hand.search(line)
    ]
    assert found == [], "format durations with citywatch.durations.duration_zh"
