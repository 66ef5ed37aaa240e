"""The InfluxDB writer: a sink that batches, compresses, writes, and spools on failure.

Batches are cut by size (``batch_size`` points) or age (``flush_interval``),
written in order by one flusher, and each caller's ``write`` returns once its
points are in InfluxDB or in the spool. While the spool holds anything, new
batches join its tail, so replay keeps the original order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from citywatch.aio import cancel_and_wait
from citywatch.influx.client import InfluxClient, WriteError
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.schema import to_line
from citywatch.influx.spool import Spool, SpoolFull
from citywatch.models import Record
from citywatch.sink import SinkUnavailable

log = logging.getLogger(__name__)


class NotStored(SinkUnavailable):
    """The batch is neither in InfluxDB nor in the spool; the caller must keep it."""


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    done: asyncio.Future[None] | None = None
    created: float = field(default_factory=time.monotonic)


class InfluxWriter:
    """A :class:`citywatch.sink.Sink` that stores records in InfluxDB, or the spool."""

    def __init__(
        self,
        cfg: InfluxConfig,
        spool_cfg: SpoolConfig,
        spool_dir: Path,
        metrics: WriterMetrics,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.spool = Spool(spool_dir, spool_cfg.max_bytes, fsync=spool_cfg.fsync)
        self._current = _Batch()
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._spooled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._session: aiohttp.ClientSession | None = None
        self.client: InfluxClient | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="influx-io")
        self.last_error: str | None = None
        self.stats = {"written": 0, "spooled": 0, "replayed": 0, "dropped": 0, "unencodable": 0}
        self._update_spool_metrics()
        if len(self.spool):
            self._spooled.set()

    async def __aenter__(self) -> InfluxWriter:
        if self.cfg.url:
            self._session = aiohttp.ClientSession()
            self.client = InfluxClient(self.cfg, self._session)
            if self.cfg.create_db:
                self._tasks.append(asyncio.create_task(self._create_db(), name="influx-create-db"))
        else:
            log.warning("no InfluxDB configured (influx.url): every batch waits in the spool")
        self._tasks.append(asyncio.create_task(self._flusher(), name="influx-flush"))
        self._tasks.append(asyncio.create_task(self._replayer(), name="influx-replay"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
        self._pool.shutdown(wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in self._tasks if t.get_name() != "influx-create-db"]

    # -- the sink -------------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> None:
        """Add records to the current batch; return once that batch is stored."""
        if not records:
            return
        lines = []
        for r in records:
            try:
                lines.append(to_line(r))
            except (ValueError, TypeError, KeyError) as exc:
                # A record that cannot be encoded is a bug; it must not hold up the rest.
                log.error("cannot encode %s: %s", type(r).__name__, exc)
                self._count("unencodable", 1)
        if not lines:
            return
        batch = self._current
        if batch.done is None:
            batch.done = asyncio.get_running_loop().create_future()
        batch.lines.extend(lines)
        if len(batch.lines) >= self.cfg.batch_size:
            self._cut()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.cfg.flush_interval, self._cut)
        await asyncio.shield(batch.done)

    async def flush(self) -> None:
        """Cut the current batch and wait until everything queued is stored or failed."""
        self._cut()
        await self._queue.join()

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._current
        if batch.lines:
            self._current = _Batch()
            self._queue.put_nowait(batch)

    # -- background -----------------------------------------------------------------

    def _encode(self, lines: list[str]) -> bytes:
        body = "\n".join(lines).encode()
        return zlib.compress(body, 1, wbits=31) if self.cfg.gzip else body

    async def _run_io(self, fn: object, *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]

    async def _flusher(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._store(batch)
            finally:
                self._queue.task_done()

    async def _store(self, batch: _Batch) -> None:
        assert batch.done is not None
        n = len(batch.lines)
        body: bytes = await self._run_io(self._encode, batch.lines)  # type: ignore[assignment]
        if self.client is not None and not len(self.spool):
            try:
                await self._send(body)
            except WriteError as exc:
                if not exc.retryable:
                    self._dropped(n, exc)
                    batch.done.set_result(None)
                    return
            else:
                self._count("written", n)
                batch.done.set_result(None)
                return
        try:
            await self._run_io(self.spool.append, body)
        except SpoolFull as exc:
            self.metrics.spool_full.inc()
            self.last_error = str(exc)
            log.error("batch of %d points not stored: %s", n, exc)
            batch.done.set_exception(NotStored(str(exc)))
            return
        self._count("spooled", n)
        self._update_spool_metrics()
        self._spooled.set()
        batch.done.set_result(None)

    async def _send(self, body: bytes) -> None:
        assert self.client is not None
        t0 = time.perf_counter()
        try:
            await self.client.write(body, gzipped=self.cfg.gzip)
        except WriteError as exc:
            self.metrics.failures.labels(str(exc.retryable).lower()).inc()
            if self.last_error != str(exc):
                log.warning("write failed: %s", exc)
            self.last_error = str(exc)
            raise
        self.metrics.latency.observe(time.perf_counter() - t0)
        self.last_error = None

    def _dropped(self, n: int, exc: WriteError) -> None:
        # A 400 is InfluxDB refusing points as invalid (e.g. a field type conflict);
        # sending it again cannot succeed. InfluxDB 1.x still stores the valid points.
        log.error("InfluxDB refused a batch of %d points: %s", n, exc)
        self._count("dropped", n)

    async def _replayer(self) -> None:
        backoff = 0.2
        while True:
            await self._spooled.wait()
            if self.client is None:
                self._spooled.clear()
                continue
            head = self.spool.peek()
            if head is None:
                self._spooled.clear()
                self._update_spool_metrics()
                continue
            seq, body = head
            try:
                await self._send(body)
            except WriteError as exc:
                if exc.retryable:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.cfg.retry_max)
                    continue
                self._dropped(0, exc)
            else:
                self._count("replayed", 0)
                backoff = 0.2
            await self._run_io(self.spool.remove, seq)
            self._update_spool_metrics()

    async def _create_db(self) -> None:
        assert self.client is not None
        backoff = 0.2
        while True:
            try:
                await self.client.create_database()
                return
            except Exception as exc:  # keep trying: InfluxDB may come up later
                log.debug("create database: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max)

    def _count(self, outcome: str, points: int) -> None:
        self.metrics.batches.labels(outcome).inc()
        if points:
            self.metrics.points.labels(outcome).inc(points)
            self.stats[outcome] += points

    def _update_spool_metrics(self) -> None:
        self.metrics.spool_segments.set(len(self.spool))
        self.metrics.spool_bytes.set(self.spool.bytes)

    # -- readiness ------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Whether new batches can be stored: InfluxDB answering, or the spool writable."""
        if self.client is not None and self.last_error is None and not len(self.spool):
            return True, "influxdb ok"
        if self.spool.writable():
            return True, f"spooling ({len(self.spool)} batches): {self.last_error or 'no InfluxDB'}"
        return False, f"InfluxDB unavailable ({self.last_error}) and spool not writable"
