"""The stream hub: resume tokens, scope filters, and what a full client queue loses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from citywatch.api.auth import Principal
from citywatch.api.stream import Filter, Hub, StreamMetrics

ADMIN = Principal("root", "admin")


def hub(backlog: int = 100, queue_max: int = 10) -> Hub:
    return Hub(backlog, StreamMetrics(CollectorRegistry()), queue_max=queue_max)


def test_resume_replays_what_was_missed_and_resets_when_too_old() -> None:
    h = hub(backlog=5)
    for i in range(3):
        h.publish("alert", "321200", ("321202001001001",), {"n": i})
    _, missed = h.subscribe(Filter(ADMIN), h.token(1))
    assert [e.seq for e in missed or []] == [2, 3]
    for i in range(10):
        h.publish("position", "321200", (), {"n": i})
    assert h.subscribe(Filter(ADMIN), h.token(1))[1] is None  # fell out of the backlog
    assert h.subscribe(Filter(ADMIN), "otherrun.5")[1] is None  # another process run
    assert h.subscribe(Filter(ADMIN), h.token(h.last))[1] == []


def test_scope_and_filters() -> None:
    h = hub()
    lead = Principal("lead-7", "viewer", ("321200",), ("321202",))
    sub, _ = h.subscribe(Filter(lead, frozenset({"alert"})), None)
    h.publish("alert", "321200", ("321203001001001",), {})
    h.publish("position", "321200", ("321202001001001",), {})
    h.publish("alert", "321200", ("321202001001001",), {})
    assert sub.queue.qsize() == 1 and sub.queue.get_nowait() is not None


def test_a_full_queue_skips_positions_but_never_an_alert() -> None:
    h = hub(queue_max=3)
    sub, _ = h.subscribe(Filter(ADMIN), None)
    for _ in range(5):
        h.publish("position", "321200", (), {})
    assert sub.queue.qsize() == 3 and not sub.overflowed
    assert h.metrics.thinned._value.get() == 2
    h.publish("alert", "321200", (), {})
    assert sub.overflowed  # its handler sends reset: an alert change must not be lost silently


def test_a_malformed_resume_token_means_reset() -> None:
    h = hub()
    h.publish("alert", "321200", (), {})
    for bad in (f"{h.run}.²", f"{h.run}.-1", f"{h.run}.", "x" * 64):
        assert h.subscribe(Filter(ADMIN), bad)[1] is None
