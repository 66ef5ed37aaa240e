"""The delivery stage: the one place with retries, backoff, batching and giving up.

Deliveries come from the store's outbox (committed with the alert change that
caused them) and are grouped by destination, a receiver and a channel
(``mqtt``, ``webhook:<kind>:<id>``, ``grafana``). Each destination has one task
that sends its deliveries in order, in batches: a destination that is down
backs off (exponentially, with jitter, up to ``backoff_max``) without holding
up the others, and gets exactly its pending deliveries once it is back. A
notification that is refused (not retryable) or older than ``give_up_after``
is marked failed. Deduplication is by key: the store drops a delivery it
already holds, and the key travels as the notification's ``id``.

The store may fail too (a full disk): that is logged and retried, and never
stops a destination's task, since what is in memory is still delivered.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from citywatch.aio import cancel_and_wait
from citywatch.alerting.config import DeliveryConfig
from citywatch.alerting.metrics import AlertingMetrics
from citywatch.alerting.notifiers.base import Notification, Notifier, NotifyError
from citywatch.alerting.notifiers.registry import channel_kind
from citywatch.alerting.store import Delivery
from citywatch.clock import Clock

log = logging.getLogger(__name__)

Destination = tuple[str, str]
"""(receiver, channel)."""
NotifierFor = Callable[[str, str], Notifier | None]
RunIO = Callable[..., Awaitable[Any]]
IDLE_EXIT = 60.0  # an idle destination's task ends after this long (receivers come and go)
MAX_UNMARKED = 100_000  # delivered keys waiting for a store that fails; beyond, a restart resends


def decode(payload: bytes) -> Notification:
    """A notification back from its stored JSON."""
    doc = orjson.loads(payload)
    subject = doc.pop("subject")
    doc["subject_kind"], doc["subject_id"] = subject["kind"], subject["id"]
    return Notification(**doc)


def is_first(key: str) -> bool:
    """Whether a delivery is an alert's first notification (``<epoch>-<id>-1-fire0-<receiver>``)."""
    return "-1-fire0-" in key


@dataclass
class _Queue:
    items: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0
    task: asyncio.Task[None] | None = None


class Outbox:
    """Delivers the outbox's notifications; an async context manager owning its tasks."""

    def __init__(
        self,
        cfg: DeliveryConfig,
        notifier_for: NotifierFor,
        run_io: RunIO,
        store: Any,
        metrics: AlertingMetrics,
        clock: Clock,
    ) -> None:
        self.cfg = cfg
        self.notifier_for = notifier_for
        self.run_io = run_io
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._queues: dict[Destination, _Queue] = {}
        self._pending = 0
        self._closing = False
        # Delivered keys are marked in the store in batches: one transaction per send
        # would make the store's thread the bottleneck. A crash before the mark means
        # a repeat after the restart, which the idempotency key makes harmless.
        self._done: list[str] = []
        self._done_wake = asyncio.Event()
        self._marker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Outbox:
        self._marker = asyncio.create_task(self._mark_delivered(), name="outbox-marks")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        await cancel_and_wait([q.task for q in self._queues.values()])
        await cancel_and_wait([self._marker])
        if self._done:
            await self._store_call(self.store.delivered, self._done, self.clock.now())
            self._done = []

    @property
    def core_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks that must keep running (destinations' tasks come and go)."""
        return [self._marker] if self._marker is not None else []

    def pending(self) -> int:
        """Deliveries waiting, over every destination."""
        return self._pending

    async def _store_call(self, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            await self.run_io(fn, *args)
        except Exception as exc:
            log.error("outbox: the store failed (%s); delivery goes on from memory", exc)
            return False
        return True

    async def _mark_delivered(self) -> None:
        while True:
            await self._done_wake.wait()
            self._done_wake.clear()
            keys, self._done = self._done, []
            if keys and not await self._store_call(self.store.delivered, keys, self.clock.now()):
                # Kept for the next try, within a bound: beyond it a restart resends a few.
                self._done = (keys + self._done)[-MAX_UNMARKED:]
                await asyncio.sleep(1.0)
                self._done_wake.set()

    def add(self, deliveries: Iterable[Delivery]) -> None:
        """Queue deliveries (already committed to the outbox) for their destinations."""
        for d in deliveries:
            dest = (d.receiver, d.channel)
            q = self._queues.get(dest)
            if q is None:
                q = self._queues[dest] = _Queue()
            q.items.append(d)
            self._pending += 1
            q.wake.set()
            if (q.task is None or q.task.done()) and not self._closing:
                q.task = asyncio.create_task(
                    self._run(dest, q), name=f"deliver-{dest[0]}-{dest[1]}"
                )
        self.metrics.outbox.set(self._pending)

    async def _run(self, dest: Destination, q: _Queue) -> None:
        receiver, channel = dest
        while True:
            if not q.items:
                q.wake.clear()
                try:
                    async with asyncio.timeout(IDLE_EXIT):
                        await q.wake.wait()
                except TimeoutError:
                    if not q.items and self._queues.get(dest) is q:
                        del self._queues[dest]  # a new delivery makes a new queue and task
                        return
                continue
            head = q.items[0]
            wait = head.due_at - self.clock.now()
            if wait > 0:
                q.wake.clear()
                try:
                    async with asyncio.timeout(min(wait, 1.0)):
                        await q.wake.wait()
                except TimeoutError:
                    pass
                continue
            batch = [q.items[i] for i in range(min(len(q.items), self.cfg.batch_max))]
            try:
                await self._send(receiver, channel, q, batch)
            except Exception:  # the stage itself must not die with one bad batch
                log.exception("outbox: delivery to %s over %s failed", receiver, channel)
                await self._retry(q, batch, channel, "internal error")

    async def _send(self, receiver: str, channel: str, q: _Queue, batch: list[Delivery]) -> None:
        notifier = self.notifier_for(receiver, channel)
        if notifier is None:
            # Perhaps a reload removed it, and another brings it back: wait, up to give_up_after.
            await self._retry(
                q, batch, channel, f"channel {channel} of {receiver} is not configured"
            )
            return
        try:
            await notifier.notify([decode(d.payload) for d in batch])
        except NotifyError as exc:
            if exc.retryable:
                await self._retry(q, batch, channel, str(exc))
            else:
                await self._fail(q, batch, str(exc))
            return
        except Exception as exc:  # a notifier's bug, or a payload it cannot take
            if len(batch) > 1:
                for d in batch:  # alone, the others go through and only the culprit fails
                    await self._send(receiver, channel, q, [d])
                return
            log.exception("notifier %s for %s failed", channel, receiver)
            await self._fail(q, batch, f"internal error: {type(exc).__name__}")
            return
        now = self.clock.now()
        self._remove(q, batch)
        q.attempts = 0
        self._done.extend(d.key for d in batch)
        self._done_wake.set()
        self.metrics.sent.labels(channel_kind(channel)).inc(len(batch))
        for d in batch:
            if is_first(d.key):
                self.metrics.delay.observe(max(0.0, now - d.created_at))

    def _remove(self, q: _Queue, batch: list[Delivery]) -> None:
        before = len(q.items)
        if len(batch) <= before and all(q.items[i] is d for i, d in enumerate(batch)):
            for _ in batch:
                q.items.popleft()
        else:
            gone = {id(d) for d in batch}
            q.items = deque(d for d in q.items if id(d) not in gone)
        self._pending -= before - len(q.items)
        self.metrics.outbox.set(self._pending)

    async def _retry(self, q: _Queue, batch: list[Delivery], channel: str, error: str) -> None:
        now = self.clock.now()
        q.attempts += 1
        delay = min(self.cfg.backoff_max, self.cfg.backoff_initial * 2 ** (q.attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        expired = [d for d in batch if now - d.created_at >= self.cfg.give_up_after]
        if expired:
            await self._fail(q, expired, f"gave up after {self.cfg.give_up_after:.0f}s: {error}")
        keep = [d for d in batch if all(d is not e for e in expired)]
        for d in keep:
            d.attempts += 1
            d.due_at = now + delay
            d.last_error = error
        if keep:
            await self._store_call(
                self.store.retry, [(d.key, d.attempts, d.due_at, error) for d in keep]
            )
        self.metrics.retried.labels(channel_kind(channel)).inc(len(keep))
        log.warning(
            "delivery to %s over %s failed (%s); %d waiting, next try in %.1fs",
            batch[0].receiver,
            channel,
            error,
            len(q.items),
            delay,
        )

    async def _fail(self, q: _Queue, batch: list[Delivery], error: str) -> None:
        self._remove(q, batch)
        await self._store_call(self.store.failed, [(d.key, d.attempts + 1, error) for d in batch])
        self.metrics.failed.labels(channel_kind(batch[0].channel)).inc(len(batch))
        log.error(
            "gave up %d notification(s) to %s over %s: %s",
            len(batch),
            batch[0].receiver,
            batch[0].channel,
            error,
        )
