"""Alerting with a recording notifier and a manual clock: reloads, silences, faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.lifecycle import due
from citywatch.alerting.model import Alert
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.service import Alerting
from citywatch.alerting.silences import Matcher
from citywatch.clock import ManualClock
from citywatch.config import load_section
from citywatch.models import AlertEvent
from tests.alerting.standalone import standalone
from tests.helpers import await_until

CHAIN = {
    "routes": [
        {
            "name": "patrols",
            "match": {"subject": ["officer"]},
            "receivers": ["{lead}"],
            "escalate": [
                {"after": "10m", "receivers": ["supervisor"]},
                {"after": "30m", "receivers": ["duty"]},
            ],
        }
    ],
    "repeat_interval": "0s",
}


class Recorder:
    """A notifier that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[Notification] = []

    async def notify(self, alerts: Sequence[Notification]) -> None:
        self.got.extend(alerts)

    def ids(self) -> list[str]:
        return [n.id for n in self.got]


def idle(status: str, at: float, officer: str = "off-7", lead: str = "lead-1") -> AlertEvent:
    return AlertEvent(
        "patrol_idle",
        status,
        "yellow",
        "321200",
        "officer",
        officer,
        at,
        {"officer": officer, "lead": lead, "grid": "321202001001001"},
        {"held": 600.0},
        f"{officer} 原地停留 10 分钟",
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, clock: ManualClock, raw: dict[str, Any] = CHAIN
) -> AsyncIterator[tuple[Alerting, Recorder]]:
    cfg = load_section(AlertingConfig, raw, "alerting")
    rec = Recorder()
    alerting = standalone(cfg, tmp_path, rec, None, clock)
    async with alerting:
        yield alerting, rec


async def test_a_reload_that_shortens_the_chain_does_not_break_escalated_alerts(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with running(tmp_path, clock) as (alerting, rec):
        await alerting.emit([idle("firing", clock.now())])
        clock.advance(601)
        await await_until(lambda: len(rec.got) == 2, what="escalated")
        alerting.reconfigure(load_section(AlertingConfig, {}, "alerting"))
        clock.advance(3600)
        await alerting.emit([idle("firing", clock.now()), idle("resolved", clock.now())])
        await await_until(lambda: len(rec.got) == 4, what="resolution told")
        assert {n.status for n in rec.got[2:]} == {"resolved"}


def test_due_clamps_a_step_beyond_the_route() -> None:
    cfg = load_section(AlertingConfig, CHAIN, "alerting")
    a = Alert(1, "fp", "patrol_idle", "yellow", "321200", "officer", "o", 0.0, 0.0, step=2)
    a.last_told_at = 0.0
    short = load_section(AlertingConfig, {}, "alerting")
    from citywatch.alerting.routing import decide

    new, tells, nxt = due(a, decide(a, short), cfg, 10_000.0)
    assert tells == [] and new.step == 0 and nxt is None


async def test_a_failed_commit_leaves_memory_as_it_was(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running(tmp_path, clock) as (alerting, rec):
        real = alerting.store.commit
        calls = 0

        def failing(changes: Any) -> list[str]:
            nonlocal calls
            calls += 1
            raise OSError("database or disk is full")

        alerting.store.commit = failing  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk is full"):
            await alerting.emit([idle("firing", clock.now())])
        assert calls == 1 and alerting.alerts == {} and alerting.by_id == {}
        alerting.store.commit = real  # type: ignore[method-assign]
        await alerting.emit([idle("firing", clock.now())])
        await await_until(lambda: len(rec.got) == 1, what="told once the disk is back")


async def test_a_silence_mutes_reopen_and_resolve_and_holds_the_chain(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running(tmp_path, clock) as (alerting, rec):
        await alerting.emit([idle("firing", clock.now())])
        await await_until(lambda: len(rec.got) == 1, what="first push")
        await alerting.add_silence(
            [Matcher("officer", "off-7")], None, clock.now() + 3600, "duty-desk", "festival"
        )
        clock.advance(60)
        await asyncio.sleep(0)
        for _ in range(3):  # flapping under the silence: nobody is paged
            clock.advance(10)
            await alerting.emit([idle("resolved", clock.now())])
            clock.advance(10)
            await alerting.emit([idle("firing", clock.now())])
        assert len(rec.got) == 1
        # The silence ends after an hour: the supervisor's step is due 10 minutes of
        # unsilenced firing after the first push, not at once.
        clock.advance(3600)
        await await_until(
            lambda: (
                alerting.timers.next_at() is not None and alerting.timers.next_at() > clock.now()
            ),  # type: ignore[operator]
            what="the released alert rescheduled",
        )
        assert len(rec.got) == 1
        clock.advance(600)
        await await_until(lambda: len(rec.got) == 2, what="escalation after the silence")
        assert rec.got[1].receiver == "supervisor"


async def test_expiring_a_silence_that_has_not_started(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running(tmp_path, clock) as (alerting, _):
        s = await alerting.add_silence(
            [Matcher("officer", "off-7")],
            clock.now() + 600,
            clock.now() + 1200,
            "duty-desk",
            "planned",
        )
        await alerting.expire_silence(s.id)
        assert s.id not in alerting.silences


async def test_a_failing_store_does_not_stop_delivery(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running(tmp_path, clock) as (alerting, rec):

        def broken(*args: Any) -> None:
            raise OSError("database or disk is full")

        alerting.store.delivered = broken  # type: ignore[method-assign]
        for i in range(3):
            await alerting.emit([idle("firing", clock.now(), officer=f"off-{i}")])
        await await_until(lambda: len(rec.got) == 3, what="all delivered")
        assert all(not t.done() for t in alerting.tasks)


async def test_a_receiver_removed_by_a_reload_waits_instead_of_failing(tmp_path: Path) -> None:
    clock = ManualClock()
    raw = {
        "receivers": {
            "lead-1": {
                "mqtt": False,
                "webhooks": [{"kind": "wecom", "url": "http://127.0.0.1:9/x"}],
            }
        }
    }
    async with running(tmp_path, clock, raw) as (alerting, _):
        # No HTTP session here: the webhook's notifier cannot be made, as after a reload.
        await alerting.emit([idle("firing", clock.now())])
        reg = alerting.metrics.registry
        await await_until(
            lambda: (
                (
                    reg.get_sample_value(
                        "citywatch_notifications_retried_total", {"channel": "wecom"}
                    )
                    or 0
                )
                >= 1
            ),
            what="retried",
        )
        assert (
            reg.get_sample_value("citywatch_notifications_failed_total", {"channel": "wecom"})
            is None
        )
        assert alerting.outbox.pending() == 1


def test_a_receiver_label_with_a_newline_falls_back_to_duty() -> None:
    from citywatch.alerting.config import valid_receiver

    assert not valid_receiver("lead-1\n") and valid_receiver("lead-1")
