"""Durable patrol state: SQLite in the data directory, one JSON row per officer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from citywatch.sqlite import open_db
from rules.patrols.state import Patrol

SCHEMA = """
CREATE TABLE IF NOT EXISTS patrols (
    city TEXT NOT NULL,
    officer TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (city, officer)
);
"""


def to_doc(p: Patrol, coverage: dict[str, Any] | None) -> bytes:
    # orjson serialises dataclasses itself, an order of magnitude faster than asdict().
    return orjson.dumps({"patrol": p, "coverage": coverage})


def from_doc(blob: bytes) -> tuple[Patrol, dict[str, Any] | None]:
    outer = orjson.loads(blob)
    doc, coverage = outer["patrol"], outer.get("coverage")
    doc["grids"] = tuple(doc["grids"])
    doc["track"] = [tuple(pt) for pt in doc["track"]]
    doc["position"] = tuple(doc["position"]) if doc["position"] else None
    doc["sites"] = {k: tuple(v) for k, v in doc["sites"].items()}
    return Patrol(**doc), coverage


class PatrolStore:
    """Patrol states in SQLite. Use it from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.db = open_db(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    def save(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        data = list(rows)
        if not data:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO patrols (city, officer, state) VALUES (?, ?, ?)"
                " ON CONFLICT (city, officer) DO UPDATE SET state = excluded.state",
                data,
            )

    def load(self) -> Iterator[bytes]:
        for (blob,) in self.db.execute("SELECT state FROM patrols"):
            yield blob
