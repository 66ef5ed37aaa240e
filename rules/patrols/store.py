"""Durable patrol state: SQLite in the data directory, one row per officer.

Version 2: who the officer is as JSON (``doc``, rewritten only when it changes)
and their slot's numbers as one fixed-size binary row (``state``, NULL while off
shift), whose layout is kept in ``patrol_meta``. A store of version 1 (one JSON
document per officer in the table ``patrols``) is read once by
:meth:`PatrolStore.load_v1` and dropped in the transaction that saves them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from citywatch.sqlite import DECODE_ERRORS, bad_row, open_store, rows

VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS patrol_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS officers (
    city TEXT NOT NULL,
    officer TEXT NOT NULL,
    doc BLOB NOT NULL,
    state BLOB,
    PRIMARY KEY (city, officer)
);
"""
Key = tuple[str, str]


@dataclass
class SaveJob:
    """What to write, captured on the event loop; the rows are cut from ``packed`` here."""

    docs: list[tuple[str, str, bytes]] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    packed: npt.NDArray[np.uint8] = field(default_factory=lambda: np.empty(0, dtype=np.uint8))
    row_size: int = 0
    cleared: list[Key] = field(default_factory=list)
    deleted: list[Key] = field(default_factory=list)
    layout: Any = None
    """The row layout of ``packed``, when it changed: recorded in the same transaction."""
    drop_v1: bool = False

    def __bool__(self) -> bool:
        return bool(self.docs or self.keys or self.cleared or self.deleted or self.layout)


class PatrolStore:
    """Patrol states in SQLite. Use it from one thread at a time."""

    def __init__(self, path: Path) -> None:
        """Open the store at ``path``; raises :class:`~citywatch.sqlite.StoreUnusable`."""
        self.path = path
        self.db = open_store(path, SCHEMA).db
        self.db.execute(
            "INSERT OR IGNORE INTO patrol_meta (key, value) VALUES ('version', ?)", (str(VERSION),)
        )

    def close(self) -> None:
        self.db.close()

    def layout(self) -> Any:
        """The saved row layout (a numpy dtype description), or None."""
        row = self._read("SELECT value FROM patrol_meta WHERE key = 'layout'")
        if not row:
            return None
        try:
            return orjson.loads(row[0][0])
        except DECODE_ERRORS as exc:
            raise bad_row(self.path, "the row layout", exc) from None

    def save(self, job: SaveJob) -> None:
        """Write a :class:`SaveJob` in one transaction."""
        if not job:
            return
        n = job.row_size
        buf = job.packed.data  # rows are views into the copy, not copies of it
        states = [(buf[i * n : (i + 1) * n], c, o) for i, (c, o) in enumerate(job.keys)]
        with self.db:
            self.db.execute("BEGIN")
            if job.layout is not None:
                self.db.execute(
                    "INSERT INTO patrol_meta (key, value) VALUES ('layout', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (orjson.dumps(job.layout).decode(),),
                )
            if job.drop_v1:
                self.db.execute("DROP TABLE IF EXISTS patrols")
            self.db.executemany(
                "INSERT INTO officers (city, officer, doc) VALUES (?, ?, ?)"
                " ON CONFLICT (city, officer) DO UPDATE SET doc = excluded.doc",
                job.docs,
            )
            self.db.executemany(
                "UPDATE officers SET state = ? WHERE city = ? AND officer = ?", states
            )
            self.db.executemany(
                "UPDATE officers SET state = NULL WHERE city = ? AND officer = ?", job.cleared
            )
            self.db.executemany("DELETE FROM officers WHERE city = ? AND officer = ?", job.deleted)

    def load(self) -> list[tuple[str, str, bytes, bytes | None]]:
        """Every officer's (city, officer, doc, state)."""
        return self._read("SELECT city, officer, doc, state FROM officers")

    def load_v1(self) -> Iterator[bytes]:
        """The JSON documents of a version 1 store, if there is one."""
        found = self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'patrols'")
        if found:
            for (blob,) in self._read("SELECT state FROM patrols"):
                yield blob

    def _read(self, sql: str) -> list[Any]:
        return list(rows(self.db, self.path, sql))
