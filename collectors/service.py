"""The collector: broker -> decode -> sink -> acknowledge, in that order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from types import TracebackType

from citywatch.aio import cancel_and_wait
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.mqtt import MqttSource
from citywatch.condition import Condition
from citywatch.models import Record
from citywatch.sink import Sink, SinkUnavailable

log = logging.getLogger(__name__)

MAX_SINK_FAILURES = 5


class Collector:
    """Pulls batches from the broker, stores them through the sink, then acknowledges.

    Deliveries overlap (the next batch is decoded while the previous one is
    being written) but acknowledgements go out in the order received. A batch
    the sink cannot store is retried, never dropped and never acknowledged.
    """

    def __init__(
        self,
        source: MqttSource,
        decoder: BatchDecoder,
        sink: Sink,
        metrics: CollectorMetrics,
        *,
        batch_max: int = 5000,
        retry_base: float = 0.1,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.sink = sink
        self.metrics = metrics
        self.batch_max = batch_max
        self.retry_base = retry_base
        self._last: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        # Storage being down is one condition for every held batch: a line when it starts
        # and one when it ends, not a line per batch per retry.
        self._held = Condition(time.monotonic)

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self.run(), name="collector")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages and let the deliveries under way finish."""
        await cancel_and_wait([self._task])
        self._task = None
        if self._last is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._last), timeout)

    async def run(self) -> None:
        while True:
            batch = await self.source.get_batch(self.batch_max)
            decoded = self.decoder.decode(batch)
            for topic, payload in decoded.deadletters:
                self.source.publish(topic, payload)
            self._last = asyncio.create_task(self._deliver(decoded.records, batch, self._last))
            self.batches += 1

    async def _deliver(
        self,
        records: Sequence[Record],
        batch: Sequence[Incoming],
        previous: asyncio.Task[None] | None,
    ) -> None:
        backoff = self.retry_base
        failures = 0
        held = False
        while True:
            try:
                await self.sink.write(records)
                break
            except SinkUnavailable as exc:
                # Storage is down: keep the messages unacknowledged and try again; the
                # broker holds everything behind them.
                self.metrics.sink_errors.inc()
                batches, counted = (0, 0) if held else (1, len(records))
                held = True
                if self._held.begin(str(exc), events=batches, points=counted):
                    log.warning("storage unavailable (%s): holding messages unacknowledged", exc)
            except Exception:
                failures += 1
                self.metrics.sink_errors.inc()
                log.exception("sink failed on %d records (attempt %d)", len(records), failures)
                if failures >= MAX_SINK_FAILURES:
                    # A fault that repeats is a bug, not an outage: waiting for ever would
                    # stop all ingest behind this batch.
                    self.metrics.sink_given_up.inc(len(records))
                    log.error("giving up on %d records after %d failures", len(records), failures)
                    break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 50 * self.retry_base)
        if held and (ended := self._held.end()) is not None:
            log.warning(
                "storage available again after %.1f s: %d batches (%d records) were held",
                ended.seconds,
                ended.events,
                ended.points,
            )
        if previous is not None:
            await previous
        self.source.ack(batch)
