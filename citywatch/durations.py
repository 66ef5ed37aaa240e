"""How long, in Chinese words: the one formatter of every duration people read.

Alert summaries, the chat robots' and Grafana's field lines, and the patrol
rules' own summaries all write a duration through :func:`duration_zh`, so the
same span reads the same on a handheld, in a WeCom group and on a dashboard.
The style is the project's: a space between numerals and Chinese characters,
whole minutes rounded down, and at most the two largest units (a lock screen
has no room for seconds).
"""

from __future__ import annotations

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def duration_zh(seconds: float) -> str:
    """``不到 1 分钟``, ``12 分钟``, ``2 小时 5 分`` or ``3 天 2 小时``; negative counts as 0."""
    minutes = int(max(seconds, 0.0) // _MINUTE)
    days, rest = divmod(minutes, _DAY // _MINUTE)
    hours, mins = divmod(rest, _HOUR // _MINUTE)
    if days:
        return f"{days} 天 {hours} 小时"
    if hours:
        return f"{hours} 小时 {mins} 分"
    return f"{mins} 分钟" if mins else "不到 1 分钟"
