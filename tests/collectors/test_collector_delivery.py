"""The collector acknowledges only what is stored, in order, and never stalls on a bug."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.service import MAX_SINK_FAILURES, Collector
from citywatch.collectors.topics import Router
from citywatch.models import Record
from citywatch.sink import SinkUnavailable

NOW = 1_790_000_000.0


class FakeSource:
    """Hands out prepared batches and records acknowledgements (a stand-in for the broker)."""

    def __init__(self, batches: list[list[Incoming]]) -> None:
        self.batches = batches
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self.all_acked = asyncio.Event()
        self.total = sum(len(b) for b in batches)

    async def get_batch(self, max_n: int) -> list[Incoming]:
        if not self.batches:
            await asyncio.Event().wait()
        return self.batches.pop(0)

    def ack(self, msgs: Sequence[Incoming]) -> None:
        self.acked.extend(m.mid for m in msgs)
        if len(self.acked) >= self.total:
            self.all_acked.set()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload))


def fix(mid: int) -> Incoming:
    body = f'{{"ts": {NOW - mid}, "lat": 32.45, "lon": 119.92}}'.encode()
    return Incoming("citywatch/321200/devices/d1/gps", body, NOW, mid=mid)


def collector(source: FakeSource, sink: Any, registry: CollectorRegistry) -> Collector:
    metrics = CollectorMetrics(registry)
    decoder = BatchDecoder(IngestConfig(), Router(), metrics)
    return Collector(source, decoder, sink, metrics, retry_base=0.001)  # type: ignore[arg-type]


class FlakySink:
    """Unavailable for the first ``outages`` calls; slow on the first batch."""

    def __init__(self, outages: int = 0, error: Exception | None = None) -> None:
        self.outages = outages
        self.error = error
        self.calls = 0
        self.stored: list[Record] = []

    async def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.outages:
            raise SinkUnavailable("down")
        if self.calls == self.outages + 1:
            await asyncio.sleep(0.05)  # the first batch finishes after the second
        self.stored.extend(records)


async def test_acks_wait_for_storage_and_keep_order() -> None:
    source = FakeSource([[fix(1), fix(2)], [fix(3)], [fix(4), fix(5)]])
    sink = FlakySink(outages=3)
    registry = CollectorRegistry()
    async with collector(source, sink, registry):
        await asyncio.wait_for(source.all_acked.wait(), 5)
    assert source.acked == [1, 2, 3, 4, 5]
    assert len(sink.stored) == 5
    assert registry.get_sample_value("citywatch_ingest_sink_errors_total") == 3


async def test_a_sink_bug_is_given_up_after_retries_so_ingest_goes_on() -> None:
    source = FakeSource([[fix(1)], [fix(2)]])
    sink = FlakySink(error=ValueError("bug"))
    registry = CollectorRegistry()
    async with collector(source, sink, registry):
        await asyncio.wait_for(source.all_acked.wait(), 5)
    assert source.acked == [1, 2]
    assert sink.calls == 2 * MAX_SINK_FAILURES
    assert registry.get_sample_value("citywatch_ingest_sink_given_up_total") == 2


async def test_storage_outage_is_retried_without_limit() -> None:
    source = FakeSource([[fix(1)]])
    sink = FlakySink(outages=3 * MAX_SINK_FAILURES)
    async with collector(source, sink, CollectorRegistry()):
        await asyncio.wait_for(source.all_acked.wait(), 5)
    assert source.acked == [1] and len(sink.stored) == 1


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every held batch retrying once logged a line per batch per retry (about 125 a second
    # in an outage); the outage is one condition, whatever the number of batches held.
    source = FakeSource([[fix(1)], [fix(2), fix(3)], [fix(4)]])
    sink = FlakySink(outages=60)
    with caplog.at_level(logging.INFO, logger="citywatch.collectors.service"):
        async with collector(source, sink, CollectorRegistry()):
            await asyncio.wait_for(source.all_acked.wait(), 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "citywatch.collectors.service"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage unavailable (down)")
    assert "3 batches (4 records) were held" in lines[1]
