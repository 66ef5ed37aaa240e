"""The alerting layer: the stateful wrapper around :mod:`alerting.lifecycle`.

An :class:`~rules.events.AlertSink` for the rules. Each batch of alert events
is applied to the alerts in memory, and the changes with the notifications
they cause are committed to SQLite in one transaction before ``emit``
returns; then the outbox delivers them. One timer per open alert wakes it for
its next escalation step or reminder; silences wake the alerts they release.
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
from typing import Any, Protocol, TypeVar

import orjson

from alerting import lifecycle, routing
from alerting.channels import GRAFANA, Channels
from alerting.config import AlertingConfig
from alerting.lifecycle import LifecycleError, Tell
from alerting.metrics import AlertingMetrics
from alerting.model import ACKNOWLEDGED, FIRING, RESOLVED, Alert
from alerting.notifiers.base import Notification
from alerting.outbox import Outbox
from alerting.silences import Matcher, Silence, silenced_by
from alerting.store import AlertStore, Change, Delivery
from alerting.summary import summary
from citywatch.aio import cancel_and_wait
from citywatch.clock import Clock
from citywatch.models import AlertAck, AlertChange, AlertEvent, Record, Rejected
from citywatch.scheduler import Timers
from citywatch.sink import Sink

log = logging.getLogger("citywatch.alerts")
T = TypeVar("T")
_STATUS_OF = {"resolve": RESOLVED, "ack": ACKNOWLEDGED}
_CHANGE_OF = {"fire": "notified", "escalate": "escalated", "remind": "reminded"}


class RejectSink(Protocol):
    """Where refused acknowledgements go: the dead-letter topic and the record."""

    async def reject(self, rejected: Rejected, payload: bytes) -> None: ...


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
        topic_root: str = "citywatch",
        housekeeping_interval: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self.store_path = store_path
        self.channels = channels
        self.history = history
        self.metrics = metrics
        self.clock = clock
        self.rejects = rejects
        self.topic_root = topic_root
        self.housekeeping_interval = housekeeping_interval
        self.alerts: dict[str, Alert] = {}
        self.by_id: dict[int, Alert] = {}
        self.silences: dict[str, Silence] = {}
        self.timers = Timers(clock, self._on_due)
        self._tz = cfg.tz
        self._next_id = 1
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="alert-store")
        self._store: AlertStore | None = None
        self._outbox: Outbox | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()
        """Notified after every committed change (for tests and the API's stream)."""
        metrics.by_state(self._state_counts)

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    @property
    def store(self) -> AlertStore:
        assert self._store is not None, "Alerting is used outside its context"
        return self._store

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Alerting:
        now = self.clock.now()
        self._store = await self._run_io(AlertStore, self.store_path)
        store = self._store
        current = await self._run_io(lambda: list(store.load_current(now - self.cfg.reopen_window)))
        self._next_id = await self._run_io(store.max_id) + 1
        for s in await self._run_io(store.load_silences, now):
            self.silences[s.id] = s
            self._time_silence(s)
        for a in current:
            self._keep(a)
            if a.status == FIRING:
                # At once: an escalation or reminder that fell due while down is due now.
                self.timers.set(("alert", a.id), now)
        pending = await self._run_io(lambda: list(store.pending()))
        self._outbox = Outbox(
            self.cfg.delivery,
            self.channels.notifier,
            self._run_io,
            store,
            self.metrics,
            self.clock,
            on_delivered=self._delivered,
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
        if self._store is not None:
            await self._run_io(self._store.close)
        self._io.shutdown(wait=True)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

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
            for ev in events:
                fp = ev.fingerprint
                current = self.alerts.get(fp)
                before.setdefault(fp, current)
                alert, change, tells = lifecycle.on_event(
                    current, ev, now, self.cfg.reopen_window, self._next_id
                )
                if alert is None or change is None:
                    continue
                if change == "opened":
                    self._next_id += 1
                    alert.route = routing.choose_route(alert, self.cfg, now, self._tz)
                detail: dict[str, Any] = {"at": ev.at, "values": dict(ev.values)}
                c = Change(alert, change, now, detail, self._deliveries(alert, tells, now))
                changes.append(c)
                if change in ("opened", "resolved") and self.channels.grafana:
                    c.deliveries = [*c.deliveries, self._grafana(alert, change, now)]
                final[alert.id] = self._advance(alert, now, changes)
                self.alerts[fp] = final[alert.id][0]
            try:
                await self._commit(changes, final)
            except BaseException:
                for fp, old in before.items():  # memory must not run ahead of the store
                    if old is None:
                        self.alerts.pop(fp, None)
                    else:
                        self.alerts[fp] = old
                raise
            self._schedule(final)

    def _advance(
        self, alert: Alert, now: float, changes: list[Change]
    ) -> tuple[Alert, float | None]:
        """Tell whom :func:`lifecycle.due` says is due now; returns the alert and its next time."""
        if alert.status != FIRING:
            return alert, None
        silenced = self._silenced(alert, now)
        new, tells, nxt = lifecycle.due(
            alert, routing.route_of(alert, self.cfg), self.cfg, now, silenced
        )
        for t in tells:
            changes.append(
                Change(
                    new,
                    _CHANGE_OF[t.kind],
                    now,
                    {"step": t.step, "receivers": list(t.receivers)},
                    self._deliveries(new, [t], now),
                )
            )
        return new, nxt

    def _schedule(self, final: dict[int, tuple[Alert, float | None]]) -> None:
        for alert_id, (_, nxt) in final.items():
            self.timers.set(("alert", alert_id), nxt)

    async def _on_due(self, due: list[tuple[Any, float]], now: float) -> None:
        async with self._lock:
            changes: list[Change] = []
            touched: list[Alert] = []
            for key, _ in due:
                kind, ident = key
                if kind == "silence":
                    s = self.silences.get(ident)
                    if s is not None and now < s.ends_at:
                        self.timers.set(key, s.ends_at)  # it started: wake again at its end
                    touched.extend(a for a in self.by_id.values() if a.status == FIRING)
                    continue
                a = self.by_id.get(ident)
                if a is not None:
                    touched.append(a)
            final: dict[int, tuple[Alert, float | None]] = {}
            for a in touched:
                if a.id not in final:
                    final[a.id] = self._advance(a, now, changes)
            await self._commit(changes, final)
            self._schedule(final)

    # -- people -----------------------------------------------------------------

    async def acknowledge(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """Acknowledge an open alert: its chain and reminders stop, everyone told hears who.

        Raises KeyError for an unknown alert and :class:`lifecycle.LifecycleError`
        for one already acknowledged or resolved.
        """
        async with self._lock:
            a = self.by_id.get(alert_id)
            if a is None:
                stored = await self._run_io(self.store.get, alert_id)
                if stored is None:
                    raise KeyError(alert_id)
                a = stored
            now = self.clock.now()
            new, tells = lifecycle.acknowledge(a, by, note, now)
            detail = {"by": by, "note": note}
            change = Change(new, "acknowledged", now, detail, self._deliveries(new, tells, now))
            await self._commit([change], {new.id: (new, None)})
            self.timers.set(("alert", new.id), None)
            return new

    # -- acknowledgements from handhelds (the collector's sink) ----------------

    async def write(self, records: Sequence[Record]) -> None:
        """Apply the acknowledgements among ``records``; other records are not for alerting.

        An acknowledgement that cannot be applied is refused to the dead-letter
        topic (``ack_refused``), never raised: the collector must not stall on it.
        One repeated by the receiver who acknowledged (a redelivery) is a no-op.
        """
        for r in records:
            if type(r) is AlertAck:
                await self._apply_ack(r)

    async def _apply_ack(self, ack: AlertAck) -> None:
        why = await self._ack_refusal(ack)
        if why is None:
            try:
                await self.acknowledge(ack.alert_id, by=ack.receiver, note=ack.note)
            except KeyError:
                why = f"alert {ack.alert_id} is unknown"
            except LifecycleError as exc:
                # The alert changed since it was looked at (e.g. resolved meanwhile).
                again = await self._ack_refusal(ack)
                why = str(exc) if again is None else again
            else:
                log.info("alert %d acknowledged by %s from a handheld", ack.alert_id, ack.receiver)
                return
        if not why:
            return  # the receiver's own acknowledgement again (a redelivery): already done
        log.info("acknowledgement of alert %d by %s refused: %s", ack.alert_id, ack.receiver, why)
        if self.rejects is None:
            return
        topic = f"{self.topic_root}/{ack.city}/acks/{ack.receiver}"
        rejected = Rejected("ack", "ack_refused", why, topic, ack.received_at, ack.city)
        doc: dict[str, Any] = {"alert_id": ack.alert_id, "ts": ack.ts}
        if ack.note is not None:
            doc["note"] = ack.note
        await self.rejects.reject(rejected, orjson.dumps(doc))

    async def _ack_refusal(self, ack: AlertAck) -> str | None:
        """Why ``ack`` cannot be applied: None if it can, ``""`` if it is the receiver's repeat."""
        a = self.by_id.get(ack.alert_id)
        if a is None:
            a = await self._run_io(self.store.get, ack.alert_id)
        if a is None:
            return f"alert {ack.alert_id} is unknown"
        if a.city != ack.city:
            return f"alert {a.id} is not an alert of city {ack.city}"
        if ack.receiver not in a.told:
            return f"{ack.receiver} was not told of alert {a.id}, so cannot acknowledge it"
        if a.ack_by == ack.receiver:
            return ""
        if a.status == RESOLVED:
            return f"alert {a.id} is already resolved"
        if a.ack_by is not None:
            return f"alert {a.id} was already acknowledged by {a.ack_by}"
        return None

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
            self.silences[s.id] = s
            self._time_silence(s)
        return s

    async def expire_silence(self, silence_id: str) -> Silence:
        """End a silence now; the alerts it muted carry on. KeyError if unknown."""
        async with self._lock:
            s = self.silences[silence_id]
            now = self.clock.now()
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
                self.silences[s.id] = s
            self.timers.set(("silence", s.id), now)
            return s

    def _time_silence(self, s: Silence) -> None:
        now = self.clock.now()
        # Woken at its start (to mute, nothing to tell) and at its end (to tell what it held).
        self.timers.set(("silence", s.id), s.ends_at if s.starts_at <= now else s.starts_at)

    def _silenced(self, a: Alert, now: float) -> bool:
        return bool(self.silences) and silenced_by(self.silences, a.fields(), now) is not None

    def silenced_by(self, a: Alert) -> str | None:
        """The silence muting ``a`` now, if any."""
        return silenced_by(self.silences, a.fields(), self.clock.now()) if a.is_open else None

    # -- notifications ----------------------------------------------------------

    def _deliveries(self, a: Alert, tells: Sequence[Tell], now: float) -> list[Delivery]:
        out: list[Delivery] = []
        for t in tells:
            status = _STATUS_OF.get(t.kind, FIRING)
            text = summary(a, t.severity, status, now)
            for r in t.receivers:
                key = t.key(a, r)
                payload = orjson.dumps(self._notification(a, t, r, key, status, text).to_json())
                for channel in self.channels.channels_for(r):
                    out.append(Delivery(f"{key}|{channel}", a.id, r, channel, payload, now, now))
        return out

    def _grafana(self, a: Alert, change: str, now: float) -> Delivery:
        status = RESOLVED if change == "resolved" else FIRING
        tell = Tell("resolve" if status == RESOLVED else "fire", (GRAFANA,), a.severity, 0)
        key = tell.key(a, GRAFANA)
        n = self._notification(a, tell, GRAFANA, key, status, summary(a, a.severity, status, now))
        return Delivery(
            f"{key}|{GRAFANA}", a.id, GRAFANA, GRAFANA, orjson.dumps(n.to_json()), now, now
        )

    @staticmethod
    def _notification(
        a: Alert, t: Tell, receiver: str, key: str, status: str, text: str
    ) -> Notification:
        labels = a.labels
        details: dict[str, Any] = {
            "kind": t.kind,
            "occurrence": a.occurrence,
            "labels": dict(labels),
            "values": dict(a.values),
        }
        if status == ACKNOWLEDGED:
            details.update(ack_by=a.ack_by, ack_note=a.ack_note, ack_at=a.ack_at)
        if t.kind == "remind":
            details["reminder"] = t.n
        return Notification(
            id=key,
            fingerprint=a.fingerprint,
            rule=a.rule,
            severity=t.severity,
            status=status,
            city=a.city,
            subject_kind=a.subject_kind,
            subject_id=a.subject,
            starts_at=a.starts_at,
            summary=text,
            receiver=receiver,
            escalation=t.step,
            ends_at=a.ends_at if status == RESOLVED else None,
            grid=labels.get("grid"),
            unit=labels.get("unit"),
            officer=labels.get("officer") or (a.subject if a.subject_kind == "officer" else None),
            device=labels.get("device"),
            details=details,
            alert_id=a.id,
        )

    def _delivered(self, batch: list[Delivery], now: float) -> None:
        for d in batch:
            a = self.by_id.get(d.alert_id)
            if a is not None and a.first_delivered_at is None:
                a.first_delivered_at = now  # informative only; saved with the next change

    # -- storage ----------------------------------------------------------------

    async def _commit(
        self, changes: list[Change], final: dict[int, tuple[Alert, float | None]]
    ) -> None:
        """Store ``changes``, each with its alert's final state; queue what is new to the outbox."""
        for c in changes:
            c.alert = final[c.alert.id][0] if c.alert.id in final else c.alert
        if changes:
            await self._store_changes(changes)
        for alert, _ in final.values():
            self._keep(alert)

    async def _store_changes(self, changes: list[Change]) -> None:
        added = set(await self._run_io(self.store.commit, changes))
        self.outbox.add(d for c in changes for d in c.deliveries if d.key in added)
        for c in changes:
            self.metrics.changes.labels(c.alert.rule, c.alert.severity, c.change).inc()
        self._write_history(changes)
        async with self.changed:
            self.changed.notify_all()

    def _write_history(self, changes: list[Change]) -> None:
        if self.history is None:
            return
        points = [_history_point(c) for c in changes if c.change != "updated"]
        if points:
            # Not awaited: delivery must not wait for the InfluxDB writer's next batch.
            task = asyncio.create_task(self.history.write(points))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _keep(self, a: Alert) -> None:
        old = self.by_id.get(a.id)
        if old is not None and old.first_delivered_at is not None and a.first_delivered_at is None:
            a.first_delivered_at = old.first_delivered_at
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
            state = "silenced" if self._silenced(a, now) else a.status
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
                for s in list(self.silences.values()):
                    if s.ends_at < now:
                        del self.silences[s.id]
            t0 = time.perf_counter()
            pruned = await self._run_io(self.store.prune, now - self.cfg.delivery.keep_sent)
            if pruned:
                log.info("outbox: pruned %d old rows in %.2fs", pruned, time.perf_counter() - t0)


def _history_point(c: Change) -> AlertChange:
    a = c.alert
    detail = c.detail or {}
    receivers = detail.get("receivers") or ()
    return AlertChange(
        alert_id=a.id,
        fingerprint=a.fingerprint,
        rule=a.rule,
        severity=a.severity,
        status=a.status,
        change=c.change,
        city=a.city,
        subject_kind=a.subject_kind,
        subject=a.subject,
        at=c.at,
        step=int(detail.get("step", max(a.step, 0))),
        grid=a.labels.get("grid"),
        unit=a.labels.get("unit"),
        officer=a.labels.get("officer"),
        receivers=",".join(receivers),
        by=detail.get("by"),
        note=detail.get("note"),
    )
