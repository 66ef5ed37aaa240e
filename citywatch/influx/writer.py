"""The InfluxDB writer: a sink that batches, writes, and spools what InfluxDB cannot take now.

Batches are cut by size (``batch_size`` points or ``max_body`` bytes) or age
(``flush_interval``) and written in order by one flusher, in requests capped the
same way (:mod:`citywatch.influx.delivery`). Each caller's ``write`` returns once
its points are in InfluxDB, in the spool, or refused by InfluxDB and dead-lettered
(reason ``influx_refused``). While the spool holds anything, new batches join its
tail, so replay keeps the original order. What can be stored nowhere raises
:class:`NotStored`: the collector then keeps the messages unacknowledged in the
broker.

Conditions (InfluxDB unavailable, the spool full or failing) are logged once
when they start and once when they end, with counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import aiohttp

from citywatch.aio import cancel_and_wait
from citywatch.clock import Clock, SystemClock
from citywatch.condition import Condition
from citywatch.influx import delivery
from citywatch.influx.client import InfluxClient, WriteError
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.delivery import Outcome
from citywatch.influx.health import InfluxHealth
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.refused import RefusedPoints
from citywatch.influx.schema import to_line
from citywatch.influx.spool import Spool, SpoolFull, SpoolUnwritable
from citywatch.models import Record
from citywatch.sink import RejectSink, SinkUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_INTERVAL = 1.0
"""Seconds between probes of InfluxDB (``/ping``) and of the spool while either fails:
the replay starts within about this long of InfluxDB answering again."""
HEALTH_INTERVAL = 5.0
"""Without a write for this long, InfluxDB is pinged so that readiness stays true to it."""
BACKOFF_MIN = 0.2


class NotStored(SinkUnavailable):
    """The batch is neither in InfluxDB nor in the spool; the caller must keep it."""


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    size: int = 0
    done: asyncio.Future[None] | None = None


class InfluxWriter:
    """A :class:`citywatch.sink.Sink` that stores records in InfluxDB, or the spool.

    Points InfluxDB refuses go to ``rejects`` as dead letters (see :meth:`use_rejects`).
    """

    def __init__(
        self,
        cfg: InfluxConfig,
        spool_cfg: SpoolConfig,
        spool_dir: Path,
        metrics: WriterMetrics,
        *,
        clock: Clock | None = None,
        rejects: RejectSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.refused = RefusedPoints(metrics, clock or SystemClock(), rejects)
        self.spool = Spool(spool_dir, spool_cfg.max_bytes, fsync=spool_cfg.fsync)
        self._current = _Batch()
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._spooled = asyncio.Event()
        """The replayer has work: batches in the spool, or a spool not read yet."""
        self._probe_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._session: aiohttp.ClientSession | None = None
        self.client: InfluxClient | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="influx-io")
        self.stats = {"written": 0, "spooled": 0, "replayed": 0, "dropped": 0, "unencodable": 0}
        self._probe_interval = min(PROBE_INTERVAL, cfg.retry_max)
        self.health = InfluxHealth(self._behind, lambda: len(self.spool))
        self._spool_down = Condition(time.monotonic)
        self._spool_full = Condition(time.monotonic)
        self._replaying = Condition(time.monotonic)
        self._refused_size = 0
        """Bytes of the last batch over the spool's size limit; 0 once one fits again."""
        self._sent: int | None = None
        """The spool batch already written to InfluxDB whose file could not be removed yet:
        it is removed, not sent again. (After a restart it is sent again; identical points
        change nothing in InfluxDB.)"""
        self._update_spool_metrics()
        if self._behind():
            self._spooled.set()
        if self.spool.error is not None:
            self._spool_failing(self.spool.error)

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
        self._tasks.append(asyncio.create_task(self._watch(), name="influx-watch"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()
        for _ in range(3):
            # Dead letters of points refused in that flush write their records here.
            await asyncio.sleep(0)
            if not self._current.lines:
                break
            await self.flush()
        if self.refused.held:
            log.warning("%d dead letters of refused points not published", len(self.refused.held))
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
        self._pool.shutdown(wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in self._tasks if t.get_name() != "influx-create-db"]

    async def use_rejects(self, rejects: RejectSink) -> None:
        """Dead-letter refused points through ``rejects``, those refused until now first."""
        await self.refused.attach(rejects)

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
        batch.size += sum(map(len, lines)) + len(lines)
        if len(batch.lines) >= self.cfg.batch_size or batch.size >= self.cfg.max_body:
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

    # -- storing a batch ------------------------------------------------------------

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _flusher(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._store(batch)
            finally:
                self._queue.task_done()

    async def _store(self, batch: _Batch) -> None:
        assert batch.done is not None
        try:
            await self._store_lines(batch.lines)
        except NotStored as exc:
            batch.done.set_exception(exc)
        except Exception as exc:
            # A bug: the callers must not wait for ever (the task ending stops the service).
            batch.done.set_exception(exc)
            raise
        else:
            batch.done.set_result(None)

    def _behind(self) -> bool:
        """Whether older batches wait in the spool (or may: one that could not be read)."""
        return bool(len(self.spool)) or not self.spool.opened

    async def _store_lines(self, lines: list[str]) -> None:
        if self.client is not None and not self._behind():
            out = await self._deliver(lines)
            if out.written:
                self._count("written", out.written)
            if out.error is None:
                self._spool_full_ended()
                return
            lines = out.pending
        await self._spool_lines(lines)
        self._spool_full_ended()

    def _spool_full_ended(self) -> None:
        """A batch was stored: if the spool was full until now, that condition is over."""
        ended = self._spool_full.end()
        if ended is not None:
            log.warning(
                "batches are stored again after %.1f s of a full spool; %d batches (%d points) "
                "were left unacknowledged with the broker meanwhile",
                ended.seconds,
                ended.events,
                ended.points,
            )

    async def _spool_lines(self, lines: list[str]) -> None:
        """Store lines in the spool in batches capped like writes; raise NotStored if not."""
        bodies = await self._run_io(self._encode_chunks, lines)
        size = sum(len(body) for _, body in bodies)
        try:
            if not self.spool.fits(size):
                self._refused_size = size
                self._spool_refused(
                    SpoolFull(
                        f"spool holds {self.spool.bytes} bytes, limit {self.spool.max_bytes}"
                    ),
                    len(lines),
                )
            for i, (n, body) in enumerate(bodies):
                try:
                    await self._run_io(self.spool.append, body)
                except SpoolFull as exc:
                    if not isinstance(exc, SpoolUnwritable):
                        self._refused_size = len(body)
                    self._spool_refused(exc, sum(k for k, _ in bodies[i:]))
                self._count("spooled", n)
                self.health.spooled(n)
                self._spooled.set()
        finally:
            self._update_spool_metrics()
        self._refused_size = 0
        self._spool_works()

    def _encode_chunks(self, lines: list[str]) -> list[tuple[int, bytes]]:
        parts = delivery.chunks(lines, self.cfg.batch_size, self.cfg.max_body)
        return [(len(part), delivery.encode(part, self.cfg.gzip)) for part in parts]

    def _spool_refused(self, exc: SpoolFull, points: int) -> NoReturn:
        """Count and report a batch the spool did not take, then raise NotStored."""
        self.metrics.spool_full.inc()
        if isinstance(exc, SpoolUnwritable):
            self._spool_failing(str(exc), points)
        elif self._spool_full.begin(str(exc), points=points):
            log.error(
                "spool full (%s): new data stays unacknowledged in the broker until there is room",
                exc,
            )
        raise NotStored(str(exc))

    def _spool_failing(self, error: str, points: int = 0) -> None:
        if self._spool_down.begin(error, points=points):
            log.error(
                "%s: new data stays unacknowledged in the broker until the spool works again",
                error,
            )
        self._probe_now.set()

    def _spool_works(self) -> None:
        ended = self._spool_down.end()
        if ended is not None:
            log.warning(
                "the spool works again after %.1f s (%d failed operations; %d points were left "
                "unacknowledged with the broker meanwhile)",
                ended.seconds,
                ended.events,
                ended.points,
            )

    # -- talking to InfluxDB --------------------------------------------------------

    async def _deliver(self, lines: list[str], body: bytes | None = None) -> Outcome:
        out = await delivery.deliver(
            lines, self._send, self.cfg.batch_size, self.cfg.max_body, body=body
        )
        if out.refused:
            self._count("dropped", len(out.refused))
            await self.refused.take(out.refused)
        return out

    async def _send(self, lines: list[str], body: bytes | None) -> None:
        assert self.client is not None
        if body is None:
            body = await self._run_io(delivery.encode, lines, self.cfg.gzip)
        t0 = time.perf_counter()
        try:
            # Told by its first bytes: a spool file keeps the form it was written in.
            await self.client.write(body, gzipped=body[:2] == delivery.GZIP_MAGIC)
        except WriteError as exc:
            request_failed = delivery.refusal_cause(exc) is None
            self.metrics.failures.labels(str(request_failed).lower()).inc()
            if request_failed:
                self.health.failed(exc, write=True)
                self._probe_now.set()
            else:
                # InfluxDB answered: the points are at fault, not InfluxDB.
                self.health.answered(write=True)
            raise
        self.metrics.latency.observe(time.perf_counter() - t0)
        self.health.answered(write=True)

    async def _ping(self) -> None:
        assert self.client is not None
        try:
            await self.client.ping()
        except WriteError as exc:
            self.health.failed(exc, write=False)
        else:
            self.health.answered(write=False)

    # -- background -----------------------------------------------------------------

    async def _replayer(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            await self._spooled.wait()
            if self.client is None:
                self._spooled.clear()
                continue
            try:
                head = await self._run_io(self.spool.peek)
                if head is None:
                    self._spooled.clear()
                    self._update_spool_metrics()
                    self._drained()
                    continue
                seq, body = head
                if seq != self._sent:
                    if not await self._replay(seq, body):
                        backoff = await self._wait_to_retry(backoff)
                        continue
                    backoff = BACKOFF_MIN
                    self._sent = seq
                await self._run_io(self.spool.remove, seq)
            except SpoolUnwritable as exc:
                # A batch already written is remembered in _sent: removed, not sent again.
                self._spool_failing(str(exc))
                await asyncio.sleep(self._probe_interval)
                continue
            self._sent = None
            self._spool_works()
            self._update_spool_metrics()

    async def _replay(self, seq: int, body: bytes) -> bool:
        """Write one spool batch; False when InfluxDB failed and it must be tried again."""
        try:
            lines, plain = await self._run_io(delivery.decode, body)
        except ValueError as exc:
            path = await self._run_io(self.spool.quarantine, seq)
            log.error("spool file %s is not line protocol (%s): set aside, not replayed", path, exc)
            self._count("corrupt", 0)
            return True
        # Batches spooled before writes were capped may need splitting.
        fits = len(lines) <= self.cfg.batch_size and plain <= self.cfg.max_body
        out = await self._deliver(lines, body if fits else None)
        # A batch counts once, when it is done; its points as they are written.
        self._count("replayed", out.written, batch=out.error is None)
        self._replaying.begin("", events=int(out.error is None), points=out.written)
        if out.error is None:
            return True
        if out.written or out.refused:
            # Keep only what is left: the retry sends less and dead-letters nothing twice.
            rest = await self._run_io(delivery.encode, out.pending, self.cfg.gzip)
            with contextlib.suppress(SpoolUnwritable):
                await self._run_io(self.spool.rewrite, seq, rest)
            self._update_spool_metrics()
        return False

    async def _wait_to_retry(self, backoff: float) -> float:
        if self.health.unreachable:
            # No answer at all: the watch pings every PROBE_INTERVAL and wakes us.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.health.back.wait(), self.cfg.retry_max)
            return backoff
        # InfluxDB answered with an error (5xx, 404 ...): back off.
        await asyncio.sleep(backoff)
        return min(backoff * 2, self.cfg.retry_max)

    def _drained(self) -> None:
        ended = self._replaying.end()
        if ended is not None:
            log.info(
                "spool replayed: %d batches, %d points in %.1f s",
                ended.events,
                ended.points,
                ended.seconds,
            )

    async def _watch(self) -> None:
        """Keep readiness true: ping InfluxDB, and probe the spool while it fails."""
        while True:
            if self.client is not None and self.health.wanted(HEALTH_INTERVAL):
                await self._ping()
            spool_failing = self.spool.error is not None or not self.spool.opened
            if spool_failing and await self._run_io(self.spool.probe):
                if self._sent is None:
                    # (A removal still to do ends it when it succeeds.)
                    self._spool_works()
                if self._behind():
                    self._spooled.set()
            failing = (
                self.health.ok is False or self.spool.error is not None or not self.spool.opened
            )
            self._probe_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._probe_now.wait(), self._probe_interval if failing else HEALTH_INTERVAL
                )

    async def _create_db(self) -> None:
        assert self.client is not None
        backoff = BACKOFF_MIN
        while True:
            try:
                await self.client.create_database()
                return
            except Exception as exc:  # keep trying: InfluxDB may come up later
                log.debug("create database: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max)

    def _count(self, outcome: str, points: int, *, batch: bool = True) -> None:
        if batch:
            self.metrics.batches.labels(outcome).inc()
        if points:
            self.metrics.points.labels(outcome).inc(points)
            self.stats[outcome] += points

    def _update_spool_metrics(self) -> None:
        self.metrics.spool_segments.set(len(self.spool))
        self.metrics.spool_bytes.set(self.spool.bytes)

    # -- readiness ------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Whether a batch would be stored now: InfluxDB took the last write or /ping (in
        the last few seconds) with nothing waiting in the spool, or the spool takes it."""
        if self.client is None:
            influx = "no InfluxDB configured (influx.url)"
        elif (problem := self.health.problem()) is not None:
            influx = problem
        elif self._behind():
            influx = "InfluxDB ok, replaying the spool"
        else:
            return True, "influxdb ok"
        spool = self._spool_problem()
        if spool is None:
            return True, f"spooling ({len(self.spool)} batches): {influx}"
        return False, f"{influx}; spool {spool}"

    def _spool_problem(self) -> str | None:
        spool = self.spool
        if spool.error is not None or not spool.opened:
            return f"not writable ({spool.error})"
        if spool.bytes + max(self._refused_size, 1) > spool.max_bytes:
            return f"full ({spool.bytes} of {spool.max_bytes} bytes)"
        if not os.access(spool.dir, os.W_OK):
            return f"not writable ({spool.dir}: permission denied)"
        return None
