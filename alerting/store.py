"""Durable alerting state: alerts, their history, silences and the notification outbox.

One SQLite file in the data directory. A change to an alert and the
notifications it causes are committed in one transaction, so a crash either
loses both (the rule raises the condition again after a restart) or keeps both
(the outbox delivers after the restart). Use a store from one thread at a time.

Numbers and notification ids are never used twice, also across a store moved aside
by ``--reset-state``: notification ids begin with the store's epoch, and a store
created in place of another numbers its alerts from :func:`id_floor` on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from citywatch.alerting.model import Alert
from citywatch.alerting.silences import Silence
from citywatch.sqlite import DECODE_ERRORS, bad_row, get_info, open_store, rows, set_info

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts (fingerprint, id);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, updated_at);
CREATE TABLE IF NOT EXISTS history (
    alert_id INTEGER NOT NULL,
    at REAL NOT NULL,
    change TEXT NOT NULL,
    detail BLOB
);
CREATE INDEX IF NOT EXISTS history_alert ON history (alert_id, at);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    ends_at REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, created_at);
"""


@dataclass(slots=True)
class Delivery:
    """One notification for one receiver over one channel, waiting in the outbox."""

    key: str
    alert_id: int
    receiver: str
    channel: str
    payload: bytes
    created_at: float
    due_at: float
    attempts: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class Change:
    """What one step of the lifecycle writes: the alert, a history line, new deliveries."""

    alert: Alert
    change: str
    at: float
    detail: dict[str, Any] | None = None
    deliveries: Sequence[Delivery] = ()


def id_floor(now: float) -> int:
    """The number after which a store replacing another numbers its alerts.

    100 per second since 1970: above the alerts of any store created earlier unless
    that one raised 100 alerts a second over its life, and below 10**12, the largest
    number the API takes, until the year 2286.
    """
    return int(now) * 100


class AlertStore:
    """Alerts, history, silences and the outbox in SQLite."""

    def __init__(self, path: Path, now: float) -> None:
        """Open the store at ``path``; raises :class:`~citywatch.sqlite.StoreUnusable`.

        ``now``: the time, should the store be new in place of one moved aside.
        """
        self.path = path
        opened = open_store(path, SCHEMA)
        self.db = opened.db
        self.epoch = opened.epoch
        """Begins every notification id (:func:`alerting.notify.notification`)."""
        if opened.replaces:
            set_info(self.db, "id_floor", str(id_floor(now)))
        self._floor = int(get_info(self.db, "id_floor") or 0)

    def close(self) -> None:
        self.db.close()

    # -- alerts -----------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> list[str]:
        """Write ``changes`` in one transaction; returns the keys of deliveries new to the outbox.

        A delivery whose key is already in the outbox is a repeat (a rule raising
        the same condition again after a restart) and is dropped.
        """
        if not changes:
            return []
        added: list[str] = []
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO alerts (id, fingerprint, status, updated_at, doc) VALUES (?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                " updated_at = excluded.updated_at, doc = excluded.doc",
                [
                    (c.alert.id, c.alert.fingerprint, c.alert.status, c.at, c.alert.to_json())
                    for c in changes
                ],
            )
            self.db.executemany(
                "INSERT INTO history (alert_id, at, change, detail) VALUES (?,?,?,?)",
                [
                    (c.alert.id, c.at, c.change, orjson.dumps(c.detail) if c.detail else None)
                    for c in changes
                ],
            )
            for c in changes:
                for d in c.deliveries:
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO outbox (key, alert_id, receiver, channel, payload,"
                        " created_at, due_at) VALUES (?,?,?,?,?,?,?)",
                        (
                            d.key,
                            d.alert_id,
                            d.receiver,
                            d.channel,
                            d.payload,
                            d.created_at,
                            d.due_at,
                        ),
                    )
                    if cur.rowcount:
                        added.append(d.key)
        return added

    def max_id(self) -> int:
        """The highest alert number used (the store's floor when it has none above)."""
        row = self.db.execute("SELECT MAX(id) FROM alerts").fetchone()
        return max(int(row[0] or 0), self._floor)

    def load_current(self, resolved_since: float) -> list[Alert]:
        """Open alerts, and alerts resolved since ``resolved_since`` (they may reopen).

        Raises :class:`~citywatch.sqlite.StoreUnusable` for a row that cannot be decoded.
        """
        out = []
        for alert_id, blob in self._read(
            "SELECT id, doc FROM alerts WHERE status != 'resolved' OR updated_at >= ? ORDER BY id",
            (resolved_since,),
        ):
            try:
                out.append(Alert.from_json(blob))
            except DECODE_ERRORS as exc:
                raise bad_row(self.path, f"alert {alert_id}", exc) from None
        return out

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return list(rows(self.db, self.path, sql, args))

    def get(self, alert_id: int) -> Alert | None:
        row = self.db.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return Alert.from_json(row[0]) if row else None

    def recent_resolved(self, limit: int) -> list[Alert]:
        """The last ``limit`` resolved alerts, newest first."""
        return [
            Alert.from_json(blob)
            for (blob,) in self.db.execute(
                "SELECT doc FROM alerts WHERE status = 'resolved' ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]

    def history(self, alert_id: int) -> list[tuple[float, str, dict[str, Any] | None]]:
        return [
            (at, change, orjson.loads(detail) if detail else None)
            for at, change, detail in self.db.execute(
                "SELECT at, change, detail FROM history WHERE alert_id = ? ORDER BY rowid",
                (alert_id,),
            )
        ]

    # -- silences ---------------------------------------------------------------

    def save_silence(self, s: Silence) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO silences (id, ends_at, doc) VALUES (?,?,?)",
                (s.id, s.ends_at, orjson.dumps(s.to_json())),
            )

    def delete_silence(self, silence_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))

    def load_silences(self, ended_since: float) -> list[Silence]:
        """Silences not ended before ``ended_since``; StoreUnusable for a bad one."""
        out = []
        for silence_id, doc in self._read(
            "SELECT id, doc FROM silences WHERE ends_at >= ?", (ended_since,)
        ):
            try:
                out.append(Silence.from_json(orjson.loads(doc)))
            except DECODE_ERRORS as exc:
                raise bad_row(self.path, f"silence {silence_id}", exc) from None
        return out

    # -- the outbox -------------------------------------------------------------

    def pending(self) -> list[Delivery]:
        """Deliveries waiting in the outbox, oldest first (a bad payload fails alone when sent)."""
        return [
            Delivery(*row)
            for row in self._read(
                "SELECT key, alert_id, receiver, channel, payload, created_at, due_at, attempts,"
                " last_error FROM outbox WHERE state = 'pending' ORDER BY created_at"
            )
        ]

    def delivered(self, keys: Iterable[str], at: float) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
                " WHERE key = ?",
                [(at, k) for k in keys],
            )

    def retry(self, rows: Iterable[tuple[str, int, float, str]]) -> None:
        """``(key, attempts, due_at, error)`` for deliveries to try again later."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE outbox SET attempts = ?, due_at = ?, last_error = ? WHERE key = ?",
                [(n, due, err, k) for k, n, due, err in rows],
            )

    def failed(self, rows: Iterable[tuple[str, int, str]]) -> None:
        """``(key, attempts, error)`` for deliveries given up."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE outbox SET state = 'failed', attempts = ?, last_error = ? WHERE key = ?",
                [(n, err, k) for k, n, err in rows],
            )

    def prune(self, sent_before: float, resolved_before: float) -> int:
        """Forget notifications delivered or failed before ``sent_before``, and alerts
        (with their history) resolved before ``resolved_before``; returns the rows gone."""
        with self.db:
            self.db.execute("BEGIN")
            gone = self.db.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?", (sent_before,)
            ).rowcount
            gone += self.db.execute(
                "DELETE FROM silences WHERE ends_at < ?", (sent_before,)
            ).rowcount
            old = "SELECT id FROM alerts WHERE status = 'resolved' AND updated_at < ?"
            gone += self.db.execute(
                f"DELETE FROM history WHERE alert_id IN ({old})", (resolved_before,)
            ).rowcount
            gone += self.db.execute(
                "DELETE FROM alerts WHERE status = 'resolved' AND updated_at < ?",
                (resolved_before,),
            ).rowcount
        return gone
