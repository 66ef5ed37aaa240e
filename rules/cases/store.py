"""Durable case state: SQLite in the data directory.

Each case is one row holding its whole state as JSON (history, clocks, the
lights alerting was told about) plus the columns the KPIs are computed from.
Open cases are loaded at start-up with the instant of their next light, so a
restart needs no replay and no calendar arithmetic before the first timer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from citywatch.rules.cases.state import CaseState
from citywatch.sqlite import DECODE_ERRORS, bad_row, open_store, rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    city TEXT NOT NULL,
    case_id TEXT NOT NULL,
    open INTEGER NOT NULL,
    next_at REAL,
    unit TEXT,
    category TEXT,
    status TEXT,
    filed_at REAL,
    dispatched_at REAL,
    resolved_at REAL,
    closed_at REAL,
    cancelled_at REAL,
    reworks INTEGER NOT NULL DEFAULT 0,
    extensions INTEGER NOT NULL DEFAULT 0,
    late_steps INTEGER NOT NULL DEFAULT 0,
    disposal_on_time INTEGER,
    disposal_seconds REAL,
    overdue_at REAL,
    disposal_overdue_at REAL,
    state BLOB NOT NULL,
    PRIMARY KEY (city, case_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cases_open ON cases (open);
CREATE INDEX IF NOT EXISTS cases_filed ON cases (city, filed_at);
CREATE INDEX IF NOT EXISTS cases_dispatched ON cases (city, dispatched_at);
"""

_UPSERT = """
INSERT INTO cases (city, case_id, open, next_at, unit, category, status, filed_at,
    dispatched_at, resolved_at, closed_at, cancelled_at, reworks, extensions, late_steps,
    disposal_on_time, disposal_seconds, overdue_at, disposal_overdue_at, state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (city, case_id) DO UPDATE SET
    open = excluded.open, next_at = excluded.next_at, unit = excluded.unit,
    category = excluded.category, status = excluded.status, filed_at = excluded.filed_at,
    dispatched_at = excluded.dispatched_at, resolved_at = excluded.resolved_at,
    closed_at = excluded.closed_at, cancelled_at = excluded.cancelled_at,
    reworks = excluded.reworks, extensions = excluded.extensions,
    late_steps = excluded.late_steps, disposal_on_time = excluded.disposal_on_time,
    disposal_seconds = excluded.disposal_seconds, overdue_at = excluded.overdue_at,
    disposal_overdue_at = excluded.disposal_overdue_at, state = excluded.state
"""


def _row(state: CaseState, next_at: float | None, due: Dues) -> tuple[object, ...]:
    d = state.derived
    disposal = d.clocks.get("disposal")
    return (
        state.city,
        state.case,
        1 if state.open else 0,
        next_at,
        state.info.unit,
        state.info.category,
        d.status,
        d.filed_at,
        d.dispatched_at,
        d.resolved_at,
        d.closed_at,
        d.cancelled_at,
        d.reworks,
        d.extensions,
        d.late_clocks,
        None if disposal is None or disposal.active else int(not d.disposal_late),
        d.disposal_used if d.resolved_at is not None else None,
        due.any_step,
        due.disposal,
        state.to_json(),
    )


@dataclass(frozen=True)
class Dues:
    """When the case is (or was, or will be if nothing happens) first overdue.

    ``any_step``: the earliest such instant over all steps; ``disposal``: for the
    disposal step. The KPIs count a case as due at the end of a period when one of
    these lies before it.
    """

    any_step: float | None = None
    disposal: float | None = None


class CaseStore:
    """Cases in SQLite. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path) -> None:
        """Open the store at ``path``; raises :class:`~citywatch.sqlite.StoreUnusable`."""
        self.path = path
        self.db = open_store(path, SCHEMA).db

    def close(self) -> None:
        self.db.close()

    def save(self, rows: Iterable[tuple[CaseState, float | None, Dues]]) -> None:
        """Store these cases' states (with their next instant and dues) in one transaction."""
        data = [_row(s, n, d) for s, n, d in rows]
        if not data:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(_UPSERT, data)

    def load_open(self) -> Iterator[tuple[CaseState, float | None]]:
        """Every open case with the instant of its next light.

        Raises :class:`~citywatch.sqlite.StoreUnusable` for a row that cannot be decoded.
        """
        sql = "SELECT city, case_id, state, next_at FROM cases WHERE open = 1"
        for city, case, blob, next_at in rows(self.db, self.path, sql):
            try:
                state = CaseState.from_json(blob)
            except DECODE_ERRORS as exc:
                raise bad_row(self.path, f"case {city}/{case}", exc) from None
            yield state, next_at

    def get(self, city: str, case: str) -> CaseState | None:
        row = self.db.execute(
            "SELECT state FROM cases WHERE city = ? AND case_id = ?", (city, case)
        ).fetchone()
        return None if row is None else CaseState.from_json(row[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
