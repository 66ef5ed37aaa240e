"""The alerting layer: the stateful shell around the pure stages.

An :class:`~rules.events.AlertSink` for the rules. Each alert event goes
through the stages in order: the lifecycle applies it
(:func:`lifecycle.on_event`); the muting (:mod:`alerting.muting`) and routing
(:mod:`alerting.routing`) stages make one :class:`~alerting.decision.Decision`
for the alert; :func:`lifecycle.due` reads it to say whom to tell; the notify
stage (:mod:`alerting.notify`) turns the tells into deliveries. The changes of
a batch with the notifications they cause are committed to SQLite in one
transaction before ``emit`` returns; then the outbox delivers them. One timer
per open alert wakes it for its next escalation step or reminder (the same
stages, from the decision on); silences wake the alerts they release.
People act through :meth:`Alerting.acknowledge` and the silence methods (the
API calls them). It is also a :class:`~citywatch.sink.Sink` of the collector:
acknowledgements sent from handhelds (:class:`~citywatch.models.AlertAck`)
arrive through :meth:`Alerting.write`, and those it cannot apply go to the
dead-letter topic as ``ack_refused``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from citywatch.aio import cancel_and_wait, close_store
from citywatch.alerting import acks, lifecycle, notify, routing
from citywatch.alerting.channels import Channels
from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.decision import Decision
from citywatch.alerting.lifecycle import Tell
from citywatch.alerting.metrics import AlertingMetrics
from citywatch.alerting.model import FIRING, RESOLVED, Alert
from citywatch.alerting.muting import Muting
from citywatch.alerting.outbox import Outbox
from citywatch.alerting.silences import Matcher, Silence
from citywatch.alerting.store import AlertStore, Change, Delivery
from citywatch.clock import Clock
from citywatch.models import AlertAck, AlertEvent, Record
from citywatch.scheduler import Timers
from citywatch.sink import RejectSink, Sink
from citywatch.topics import DEFAULT_ROOT

log = logging.getLogger("citywatch.alerts")
T = TypeVar("T")
_CHANGE_OF = {"fire": "notified", "escalate": "escalated", "remind": "reminded"}


class Alerting:
    """Alerts with a lifecycle, routing, escalation and a durable outbox."""

    def __init__(
        self,
        cfg: AlertingConfig,
        store_path: Path,
        channels: Channels,
        history: Sink | None,
        metrics: AlertingMetrics,
        clock: Clock,
        *,
        rejects: RejectSink | None = None,
        topic_root: str = DEFAULT_ROOT,
        housekeeping_interval: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self.store_path = store_path
        self.channels = channels
        self._history = history
        self.metrics = metrics
        self.clock = clock
        self.rejects = rejects
        self.topic_root = topic_root
        self.housekeeping_interval = housekeeping_interval
        self.alerts: dict[str, Alert] = {}
        self.by_id: dict[int, Alert] = {}
        self.muting = Muting()
        self.timers = Timers(clock, self._on_due)
        self._tz = cfg.tz
        self._next_id = 1
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="alert-store")
        self._store: AlertStore | None = None
        self._outbox: Outbox | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[list[Alert]], None]] = []
        """Called with the alerts of every committed batch of changes (the API's stream)."""
        metrics.by_state(self._state_counts)

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    @property
    def silences(self) -> dict[str, Silence]:
        """Every silence not yet forgotten, by id (the muting stage's)."""
        return self.muting.silences

    @property
    def store(self) -> AlertStore:
        assert self._store is not None, "Alerting is used outside its context"
        return self._store

    def ready(self) -> tuple[bool, str]:
        """Whether its state store is open (``/readyz``), as a rule says of its own."""
        if self._store is None:
            return False, "state store not open"
        return True, f"open: {self.store_path}"

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Alerting:
        now = self.clock.now()
        try:
            self._store = await self._run_io(AlertStore, self.store_path, now)
            store = self._store
            current = await self._run_io(
                lambda: list(store.load_current(now - self.cfg.reopen_window))
            )
            self._next_id = await self._run_io(store.max_id) + 1
            silences = await self._run_io(store.load_silences, now)
            pending = await self._run_io(store.pending)
        except BaseException:
            # Not entered, so never exited: close the store here (it may be moved aside next).
            opened, self._store = self._store, None
            await close_store(self._io, opened, wait=False)
            raise
        for s in silences:
            self.muting.put(s)
            self._time_silence(s)
        for a in current:
            self._keep(a)
            if a.status == FIRING:
                # At once: an escalation or reminder that fell due while down is due now.
                self.timers.set(("alert", a.id), now)
        self._outbox = Outbox(
            self.cfg.delivery,
            self.channels.notifier,
            self._run_io,
            store,
            self.metrics,
            self.clock,
        )
        await self._outbox.__aenter__()
        self._outbox.add(pending)
        log.info(
            "alerting: %d open alerts, %d silences, %d notifications pending",
            sum(a.is_open for a in current),
            len(self.silences),
            len(pending),
        )
        self._tasks = [
            asyncio.create_task(self.timers.run(), name="alert-timers"),
            asyncio.create_task(self._housekeeping(), name="alert-housekeeping"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(self._tasks)
        if self._outbox is not None:
            await self._outbox.__aexit__(None, None, None)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await close_store(self._io, self._store, wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The background tasks that must run as long as alerting does."""
        return [*self._tasks, *(self._outbox.core_tasks if self._outbox is not None else [])]

    def reconfigure(self, cfg: AlertingConfig) -> None:
        """New routes, receivers and timings; open alerts keep their state and route name."""
        self.cfg, self._tz = cfg, cfg.tz
        self.channels.reconfigure(cfg)
        self.outbox.cfg = cfg.delivery
        for a in self.by_id.values():
            if a.status == FIRING:
                self.timers.set(("alert", a.id), self.clock.now())

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None, "Alerting is used outside its context"
        return self._outbox

    # -- the rules' events ------------------------------------------------------

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        """Apply the rules' events; returns once their changes are durable."""
        if not events:
            return
        async with self._lock:
            now = self.clock.now()
            changes: list[Change] = []
            final: dict[int, tuple[Alert, float | None]] = {}
            before: dict[str, Alert | None] = {}
            try:
                for ev in events:
                    self._apply_event(ev, now, changes, final, before)
                await self._commit(changes, final)
            except Exception:
                for fp, old in before.items():  # memory must not run ahead of the store
                    if old is None:
                        self.alerts.pop(fp, None)
                    else:
                        self.alerts[fp] = old
                raise
            self._schedule(final)

    def _apply_event(
        self,
        ev: AlertEvent,
        now: float,
        changes: list[Change],
        final: dict[int, tuple[Alert, float | None]],
        before: dict[str, Alert | None],
    ) -> None:
        fp = ev.fingerprint
        current = self.alerts.get(fp)
        before.setdefault(fp, current)
        alert, change, tells = lifecycle.on_event(
            current, ev, now, self.cfg.reopen_window, self._next_id
        )
        if alert is None or change is None:
            return
        if change == "opened":
            self._next_id += 1
            alert.route = routing.choose_route(alert, self.cfg, now, self._tz)
        decision = self._decide(alert, now)
        if decision.muted:
            tells = []  # muting holds back the reopening and the resolution too
        detail: dict[str, Any] = {"at": ev.at, "values": dict(ev.values)}
        c = Change(alert, change, now, detail, self._deliveries(alert, decision, tells, now))
        changes.append(c)
        if change in ("opened", "resolved"):
            told = [
                notify.service_delivery(alert, change, now, s, self.store.epoch)
                for s in self.channels.services
            ]
            c.deliveries = [*c.deliveries, *told]
        final[alert.id] = self._advance(alert, decision, now, changes)
        self.alerts[fp] = final[alert.id][0]

    def _decide(self, alert: Alert, now: float) -> Decision:
        """The muting and routing stages, once for ``alert`` at ``now``; later stages read this."""
        return routing.decide(alert, self.cfg, self.muting.muted_by(alert, now))

    def _advance(
        self, alert: Alert, decision: Decision, now: float, changes: list[Change]
    ) -> tuple[Alert, float | None]:
        """Tell whom :func:`lifecycle.due` says is due now; returns the alert and its next time."""
        if alert.status != FIRING:
            return alert, None
        new, tells, nxt = lifecycle.due(alert, decision, self.cfg, now)
        if (new.silenced_since is None) != (alert.silenced_since is None):
            change = "silenced" if new.silenced_since is not None else "unsilenced"
            changes.append(Change(new, change, now, None))
        for t in tells:
            changes.append(
                Change(
                    new,
                    _CHANGE_OF[t.kind],
                    now,
                    {"step": t.step, "receivers": list(t.receivers)},
                    self._deliveries(new, decision, [t], now),
                )
            )
        return new, nxt

    def _schedule(self, final: dict[int, tuple[Alert, float | None]]) -> None:
        for alert_id, (_, nxt) in final.items():
            self.timers.set(("alert", alert_id), nxt)

    async def _on_due(self, due: list[tuple[Any, float]], now: float) -> None:
        async with self._lock:
            changes: list[Change] = []
            touched: dict[int, Alert] = {}
            for key, _ in due:
                kind, ident = key
                if kind == "silence":
                    s = self.silences.get(ident)
                    if s is not None and now < s.ends_at:
                        self.timers.set(key, s.ends_at)  # it started: wake again at its end
                    # Only the alerts it matches can change (muted now, or released).
                    for cand in self.by_id.values():
                        if cand.status == FIRING and (s is None or s.matches(cand.fields())):
                            touched[cand.id] = cand
                    continue
                one = self.by_id.get(ident)
                if one is not None:
                    touched[one.id] = one
            final = {
                a.id: self._advance(a, self._decide(a, now), now, changes) for a in touched.values()
            }
            await self._commit(changes, final)
            self._schedule(final)

    # -- people -----------------------------------------------------------------

    async def get(self, alert_id: int) -> Alert | None:
        """An alert by id: from memory if current, else from the store."""
        a = self.by_id.get(alert_id)
        return a if a is not None else await self._run_io(self.store.get, alert_id)

    async def history(self, alert_id: int) -> list[dict[str, Any]]:
        """The changes of an alert, oldest first."""
        rows = await self._run_io(self.store.history, alert_id)
        return [{"at": at, "change": change, "detail": detail} for at, change, detail in rows]

    async def recent_resolved(self, limit: int) -> list[Alert]:
        """The last ``limit`` resolved alerts, newest first."""
        return await self._run_io(self.store.recent_resolved, limit)

    async def acknowledge(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """Acknowledge an open alert: its chain and reminders stop, everyone told hears who.

        Raises KeyError for an unknown alert and :class:`lifecycle.LifecycleError`
        for one already acknowledged or resolved.
        """
        async with self._lock:
            a = await self.get(alert_id)
            if a is None:
                raise KeyError(alert_id)
            now = self.clock.now()
            new, tells = lifecycle.acknowledge(a, by, note, now)
            detail = {"by": by, "note": note}
            # Told whatever mutes the alert: everyone who heard of it hears who took it.
            deliveries = self._deliveries(new, self._decide(new, now), tells, now)
            change = Change(new, "acknowledged", now, detail, deliveries)
            await self._commit([change], {new.id: (new, None)})
            self.timers.set(("alert", new.id), None)
            return new

    async def write(self, records: Sequence[Record]) -> None:
        """Apply the acknowledgements from handhelds among ``records`` (:mod:`alerting.acks`)."""
        for r in records:
            if type(r) is AlertAck:
                await acks.apply_ack(r, self.get, self.acknowledge, self.rejects, self.topic_root)

    async def add_silence(
        self,
        matchers: Sequence[Matcher],
        starts_at: float | None,
        ends_at: float,
        created_by: str,
        comment: str,
    ) -> Silence:
        """Mute the open alerts the matchers fit, from ``starts_at`` (or now) to ``ends_at``."""
        now = self.clock.now()
        s = Silence(
            id=uuid.uuid4().hex,
            matchers=tuple(matchers),
            starts_at=now if starts_at is None else starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            created_at=now,
        )
        async with self._lock:
            await self._run_io(self.store.save_silence, s)
            self.muting.put(s)
            self._time_silence(s)
        return s

    async def expire_silence(self, silence_id: str) -> Silence:
        """End a silence now; the alerts it muted carry on. KeyError if unknown."""
        async with self._lock:
            s = self.silences[silence_id]
            now = self.clock.now()
            if s.starts_at > now:
                # Never in force: forgotten, shown once more as ended.
                await self._run_io(self.store.delete_silence, s.id)
                self.muting.forget(s.id)
                self.timers.set(("silence", s.id), None)
                return s
            if s.ends_at > now:
                s = Silence(
                    s.id,
                    s.matchers,
                    min(s.starts_at, now),
                    now,
                    s.created_by,
                    s.comment,
                    s.created_at,
                )
                await self._run_io(self.store.save_silence, s)
                self.muting.put(s)
            self.timers.set(("silence", s.id), now)
            return s

    def _time_silence(self, s: Silence) -> None:
        now = self.clock.now()
        # Woken at its start (to mute, nothing to tell) and at its end (to tell what it held).
        self.timers.set(("silence", s.id), s.ends_at if s.starts_at <= now else s.starts_at)

    def silenced_by(self, a: Alert) -> str | None:
        """The silence muting ``a`` now, if any."""
        return self.muting.silenced_by(a, self.clock.now()) if a.is_open else None

    # -- notifications ----------------------------------------------------------

    def _deliveries(
        self, a: Alert, decision: Decision, tells: Sequence[Tell], now: float
    ) -> list[Delivery]:
        return notify.deliveries(
            a, decision, tells, now, self.channels.channels_for, self.store.epoch
        )

    # -- storage ----------------------------------------------------------------

    async def _commit(
        self, changes: list[Change], final: dict[int, tuple[Alert, float | None]]
    ) -> None:
        """Store ``changes``, each with its alert's final state; queue what is new to the outbox."""
        for c in changes:
            c.alert = final[c.alert.id][0] if c.alert.id in final else c.alert
        try:
            if changes:
                await self._store_changes(changes)
        except asyncio.CancelledError:
            for alert, _ in final.values():
                self._keep(alert)
            raise
        for alert, _ in final.values():
            self._keep(alert)

    async def _store_changes(self, changes: list[Change]) -> None:
        commit = asyncio.ensure_future(self._run_io(self.store.commit, changes))
        try:
            added = set(await asyncio.shield(commit))
        except asyncio.CancelledError:
            # The commit goes on in the store's thread: finish what it needs, then stop.
            added = set(await commit)
            self._after_commit(changes, added)
            raise
        self._after_commit(changes, added)

    def _after_commit(self, changes: list[Change], added: set[str]) -> None:
        self.outbox.add(d for c in changes for d in c.deliveries if d.key in added)
        for c in changes:
            self.metrics.changes.labels(c.alert.rule, c.alert.severity, c.change).inc()
        self._write_history(changes)
        for listener in self.listeners:
            listener([c.alert for c in changes])

    def _write_history(self, changes: list[Change]) -> None:
        if self._history is None:
            return
        points = [notify.history_point(c) for c in changes if c.change != "updated"]
        if points:
            # Not awaited: delivery must not wait for the InfluxDB writer's next batch.
            task = asyncio.create_task(self._history.write(points))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _keep(self, a: Alert) -> None:
        self.by_id[a.id] = a
        current = self.alerts.get(a.fingerprint)
        if current is None or current.id <= a.id:
            self.alerts[a.fingerprint] = a

    def _state_counts(self) -> dict[tuple[str, str, str], int]:
        now = self.clock.now()
        counts: dict[tuple[str, str, str], int] = {}
        for a in self.by_id.values():
            if not a.is_open:
                continue
            state = "silenced" if self.muting.silenced_by(a, now) is not None else a.status
            key = (a.rule, a.severity, state)
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            now = self.clock.now()
            async with self._lock:
                # Resolved alerts past their reopen window live on in the store only.
                for a in list(self.by_id.values()):
                    if a.status == RESOLVED and (a.closed_at or 0.0) < now - self.cfg.reopen_window:
                        del self.by_id[a.id]
                        if self.alerts.get(a.fingerprint) is a:
                            del self.alerts[a.fingerprint]
                self.muting.forget_ended(now)
            t0 = time.perf_counter()
            pruned = await self._run_io(
                self.store.prune,
                now - self.cfg.delivery.keep_sent,
                now - self.cfg.delivery.keep_resolved,
            )
            if pruned:
                log.info(
                    "alert store: pruned %d old rows in %.2fs", pruned, time.perf_counter() - t0
                )
