"""The embedded state stores (cases, patrols) open SQLite the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (and create) a store in WAL mode; use the connection from one thread at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a crash of the process, not of the machine.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
