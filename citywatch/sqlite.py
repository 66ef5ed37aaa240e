"""The embedded state stores (cases, patrols, alerts) open SQLite the same way.

A store that is lost or damaged must never be replaced silently by an empty one:
the alerts it numbered would be numbered again, and handhelds drop a push whose id
they have seen. So every store is recorded, when it is created, in the manifest of
its folder (``stores.json``, written atomically): its file name and its *epoch*, a
random id the store also keeps in its table ``store_info``. When a store is opened:

- its file missing or empty (0 bytes, or no tables) while the manifest lists it,
- SQLite finding it damaged (``PRAGMA quick_check``, "file is not a database",
  "database disk image is malformed"),
- or, while loading, a row that cannot be decoded (:func:`bad_row`)

raise :class:`StoreUnusable`, naming the file and the way out: restore it from a
backup, or start with ``citywatch run --reset-state``, which moves it aside
(:func:`reset_store`) and lets a new store, with a new epoch, take its place.
A store found without an epoch (written before there was a manifest) is adopted.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("citywatch.state")

MANIFEST = "stores.json"
"""The manifest of the stores in a data directory."""
INFO_SCHEMA = "CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
RECOVERY = (
    "restore it from a backup, or start with `citywatch run --reset-state` "
    "to move it aside and begin afresh"
)
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
)
"""What decoding one stored row raises when the row is not what was written (bad JSON, ...)."""
_CORRUPT = 11  # SQLITE_CORRUPT: "database disk image is malformed"
_NOTADB = 26  # SQLITE_NOTADB: "file is not a database"
# The stores are opened from their own threads: one manifest update at a time.
_manifest_lock = threading.Lock()


class StoreUnusable(Exception):
    """A state store cannot be used as it is: missing, emptied, damaged or with a bad row.

    The message is one line naming the file and the recovery.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path.absolute()
        self.problem = problem
        super().__init__(f"state store {self.path} {problem}: {RECOVERY}")


@dataclass(frozen=True)
class Opened:
    """An open store and what the manifest knows of it."""

    db: sqlite3.Connection
    epoch: str
    """The store's random id, made when it was created; a reset store gets a new one."""
    created: bool
    """The store was created (empty) by this open."""
    replaces: bool
    """... in place of one that ``--reset-state`` moved aside."""


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a database or is malformed (not, e.g., locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (_CORRUPT, _NOTADB)


def damaged(path: Path, exc: sqlite3.Error) -> StoreUnusable:
    """The error for a store SQLite found damaged while reading it."""
    return StoreUnusable(path, f"is damaged ({exc})")


def rows(db: sqlite3.Connection, path: Path, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
    """The rows of a query made while loading a store; damage met on the way is StoreUnusable."""
    try:
        yield from db.execute(sql, args)
    except sqlite3.Error as exc:
        if is_damage(exc):
            raise damaged(path, exc) from None
        raise


def bad_row(path: Path, what: str, exc: BaseException) -> StoreUnusable:
    """The error for a row (``what``: e.g. ``case 321200/C1``) that cannot be decoded."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return StoreUnusable(
        path, f"has a row that cannot be decoded ({what}: {type(exc).__name__}: {detail})"
    )


def open_store(path: Path, schema: str) -> Opened:
    """Open (or create) a store in WAL mode, checked against the manifest and for damage.

    Raises :class:`StoreUnusable`. Use the connection from one thread at a time.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _manifest_lock:
        stores = read_manifest(folder)
        entry = stores.get(path.name)
        known = entry is not None and not entry.get("reset")
        size = path.stat().st_size if path.exists() else None
        if known and not size:
            raise StoreUnusable(path, "is missing" if size is None else "is empty (0 bytes)")
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            epoch, created = _prepare(db, path, schema, known)
            if entry is None or entry.get("epoch") != epoch or entry.get("reset"):
                _record(folder, stores, path, entry, epoch, created)
        except sqlite3.Error as exc:
            db.close()
            if is_damage(exc):
                raise damaged(path, exc) from None
            raise
        except BaseException:
            db.close()
            raise
    return Opened(db, epoch, created, created and entry is not None)


def _record(
    folder: Path,
    stores: dict[str, dict[str, Any]],
    path: Path,
    entry: dict[str, Any] | None,
    epoch: str,
    created: bool,
) -> None:
    """Record the store's epoch in the manifest (it is new, reset, adopted or another one)."""
    if entry is not None and not entry.get("reset"):
        log.warning(
            "state store %s is not the one last used here (epoch %s, expected %s): using it",
            path,
            epoch,
            entry.get("epoch"),
        )
    elif not created:
        log.info("state store %s recorded in %s (epoch %s)", path, MANIFEST, epoch)
    new: dict[str, Any] = {"epoch": epoch}
    if created and entry is not None:
        new["replaced"] = entry.get("epoch")  # moved aside by --reset-state
    stores[path.name] = new
    _write_manifest(folder, stores)


def _prepare(db: sqlite3.Connection, path: Path, schema: str, known: bool) -> tuple[str, bool]:
    """Check the file, create what is missing; returns the epoch and whether it is new."""
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a crash of the process, not of the machine.
    db.execute("PRAGMA synchronous=NORMAL")
    problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreUnusable(path, f"is damaged (quick_check: {'; '.join(problems)})")
    blank = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if blank and known:
        raise StoreUnusable(path, "is empty (no tables)")
    db.executescript(INFO_SCHEMA + schema)
    epoch = get_info(db, "epoch")
    if epoch is not None:
        return epoch, False
    epoch = secrets.token_hex(4)
    set_info(db, "epoch", epoch)
    return epoch, blank


def get_info(db: sqlite3.Connection, key: str) -> str | None:
    """A value of the store's ``store_info`` table."""
    row = db.execute("SELECT value FROM store_info WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_info(db: sqlite3.Connection, key: str, value: str) -> None:
    """Set a value of the store's ``store_info`` table (in a transaction of its own)."""
    with db:
        db.execute(
            "INSERT INTO store_info (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The stores recorded in ``folder`` (none without a manifest); StoreUnusable if unreadable."""
    path = folder / MANIFEST
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StoreUnusable(path, f"cannot be read ({exc})") from None
    stores = doc.get("stores") if isinstance(doc, dict) else None
    if not isinstance(stores, dict) or not all(isinstance(v, dict) for v in stores.values()):
        raise StoreUnusable(path, "cannot be read (not a manifest of stores)")
    return stores


def _write_manifest(folder: Path, stores: dict[str, dict[str, Any]]) -> None:
    """Replace the manifest atomically: a crash leaves the old one or the new one, whole."""
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    data = orjson.dumps({"format": 1, "stores": stores}, option=orjson.OPT_INDENT_2)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reset_store(path: Path, now: float) -> list[Path]:
    """Move a store's files aside as ``NAME.reset-<UTC time>`` (``-wal``, ``-shm`` alike).

    The manifest then lets a new store take its place (or, for the manifest
    itself, records the stores afresh). Returns where the files went.
    """
    folder = path.parent
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = folder / f"{path.name}.reset-{stamp}"
    n = 1
    while aside.exists():  # a second reset within the same second keeps the first
        n += 1
        aside = folder / f"{path.name}.reset-{stamp}-{n}"
    moved: list[Path] = []
    with _manifest_lock:
        for suffix in ("", "-wal", "-shm"):
            src = folder / f"{path.name}{suffix}"
            if src.exists():
                dst = folder / f"{aside.name}{suffix}"
                os.replace(src, dst)
                moved.append(dst)
        if path.name != MANIFEST:
            try:
                stores = read_manifest(folder)
            except StoreUnusable:
                stores = {}  # reported (and reset) when the store is opened
            entry = stores.get(path.name)
            if entry is not None:
                entry["reset"] = aside.name if moved else "missing"
                _write_manifest(folder, stores)
        _sync_dir(folder)
    return moved
