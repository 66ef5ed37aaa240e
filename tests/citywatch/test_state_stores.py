"""The state stores refuse to start over a store that was emptied, lost or damaged.

The shared checks (citywatch/sqlite.py) under each of the three stores: cases,
patrols and alerts. The command line around them is in test_state_recovery.py.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from citywatch.alerting.store import AlertStore, id_floor
from citywatch.clock import ManualClock
from citywatch.rules.cases.store import CaseStore
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.metrics import PatrolMetrics
from citywatch.rules.patrols.rule import PatrolRule
from citywatch.rules.patrols.store import PatrolStore
from citywatch.sqlite import MANIFEST, StoreUnusable, read_manifest, reset_store

NOW = 1_795_327_062.0


def _alerts(path: Path) -> Any:
    return AlertStore(path, NOW)


STORES: dict[str, Callable[[Path], Any]] = {
    "cases.sqlite": CaseStore,
    "patrols.sqlite": PatrolStore,
    "alerts.sqlite": _alerts,
}
store_names = pytest.mark.parametrize("name", list(STORES))


def made(tmp_path: Path, name: str) -> Path:
    """A store created, used and closed, as a run of the service leaves it."""
    path = tmp_path / name
    STORES[name](path).db.close()
    return path


def refused(path: Path) -> str:
    with pytest.raises(StoreUnusable) as caught:
        STORES[path.name](path)
    assert caught.value.path == path.absolute()
    message = str(caught.value)
    assert str(path.absolute()) in message and "--reset-state" in message and "backup" in message
    assert "\n" not in message
    return message


@store_names
def test_an_emptied_store_is_refused_until_reset(tmp_path: Path, name: str) -> None:
    path = made(tmp_path, name)
    epoch = read_manifest(tmp_path)[name]["epoch"]
    path.write_bytes(b"")
    assert "is empty (0 bytes)" in refused(path)
    assert path.stat().st_size == 0, "the refusal leaves the file as it was"

    moved = reset_store(path, NOW)
    assert [p.name for p in moved] == [f"{name}.reset-20261122T055742Z"]
    assert moved[0].stat().st_size == 0 and not path.exists()
    store = STORES[name](path)
    store.db.close()
    entry = read_manifest(tmp_path)[name]
    assert entry["epoch"] != epoch and entry["replaced"] == epoch
    # Started afresh once; emptied again, it is refused again.
    path.write_bytes(b"")
    refused(path)


@store_names
def test_a_deleted_store_is_refused(tmp_path: Path, name: str) -> None:
    path = made(tmp_path, name)
    path.unlink()
    assert "is missing" in refused(path)
    assert reset_store(path, NOW) == []
    STORES[name](path).db.close()


@store_names
def test_a_store_emptied_of_its_tables_is_refused(tmp_path: Path, name: str) -> None:
    path = made(tmp_path, name)
    path.unlink()
    sqlite3.connect(path).execute("PRAGMA user_version = 1").connection.close()
    assert "is empty (no tables)" in refused(path)


@store_names
def test_garbage_is_refused(tmp_path: Path, name: str) -> None:
    path = made(tmp_path, name)
    path.write_bytes(b"\x00not a database\xff" * 1000)
    assert "is damaged (file is not a database)" in refused(path)
    moved = reset_store(path, NOW)
    assert moved[0].read_bytes().startswith(b"\x00not a database")
    STORES[name](path).db.close()


@store_names
def test_a_damaged_page_is_refused(tmp_path: Path, name: str) -> None:
    path = made(tmp_path, name)
    with open(path, "r+b") as fh:
        fh.seek(4096)  # page 2: the root of the first table
        fh.write(b"\xa5" * 4096)
    assert "is damaged" in refused(path)


def test_a_new_data_directory_creates_its_stores_silently(tmp_path: Path) -> None:
    for name in STORES:
        (tmp_path / name).write_bytes(b"")  # 0 bytes and never recorded: nothing was lost
        made(tmp_path, name)
    assert set(read_manifest(tmp_path)) == set(STORES)


def test_a_store_from_before_the_manifest_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    CaseStore(path).db.close()
    assert "epoch" in read_manifest(tmp_path)["cases.sqlite"]
    path.write_bytes(b"")
    refused(path)


def test_another_store_put_in_place_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made(tmp_path / "here", "cases.sqlite")
    other = made(tmp_path / "there", "cases.sqlite")
    shutil.copy(other, tmp_path / "here" / "cases.sqlite")
    CaseStore(tmp_path / "here" / "cases.sqlite").db.close()
    assert read_manifest(tmp_path / "here") == read_manifest(tmp_path / "there")
    assert "is not the one last used here" in caplog.text


def test_an_unreadable_manifest_is_refused_and_reset(tmp_path: Path) -> None:
    made(tmp_path, "cases.sqlite")
    manifest = tmp_path / MANIFEST
    manifest.write_bytes(b'{"format": 1, "sto')
    with pytest.raises(StoreUnusable) as caught:
        CaseStore(tmp_path / "cases.sqlite")
    assert caught.value.path == manifest.absolute() and "cannot be read" in str(caught.value)
    reset_store(manifest, NOW)
    CaseStore(tmp_path / "cases.sqlite").db.close()
    assert "cases.sqlite" in read_manifest(tmp_path)


def test_a_file_sqlite_cannot_open_is_not_taken_for_damage(tmp_path: Path) -> None:
    # E.g. no permission: moving the store aside would not mend it, so --reset-state must not.
    path = made(tmp_path, "cases.sqlite")
    path.unlink()
    path.mkdir()
    with pytest.raises(sqlite3.OperationalError):
        CaseStore(path)


def test_a_case_that_cannot_be_decoded_names_the_case(tmp_path: Path) -> None:
    path = made(tmp_path, "cases.sqlite")
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO cases (city, case_id, open, state) VALUES ('321200', 'C1', 1, ?)",
            (b'{"city": "321200", "case": ',),
        )
    store = CaseStore(path)
    with pytest.raises(StoreUnusable) as caught:
        list(store.load_open())
    store.close()
    assert "has a row that cannot be decoded (case 321200/C1: JSONDecodeError" in str(caught.value)


def test_an_alert_or_silence_that_cannot_be_decoded_names_it(tmp_path: Path) -> None:
    path = made(tmp_path, "alerts.sqlite")
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO alerts (id, fingerprint, status, updated_at, doc)"
            " VALUES (7, 'f', 'firing', 0, ?)",
            (orjson.dumps({"id": 7}),),  # valid JSON, but not an alert
        )
        db.execute("INSERT INTO silences (id, ends_at, doc) VALUES ('s1', ?, 'nope')", (NOW,))
    store = AlertStore(path, NOW)
    with pytest.raises(StoreUnusable, match=r"\(alert 7: TypeError"):
        store.load_current(0.0)
    with pytest.raises(StoreUnusable, match=r"\(silence s1: JSONDecodeError"):
        store.load_silences(0.0)
    store.close()


async def test_an_officer_that_cannot_be_decoded_stops_the_rule_and_frees_the_store(
    tmp_path: Path,
) -> None:
    path = made(tmp_path, "patrols.sqlite")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO officers (city, officer, doc) VALUES ('321200', 'off-1', 'x')")

    def rule() -> PatrolRule:
        metrics = PatrolMetrics(CollectorRegistry())
        return PatrolRule(PatrolsConfig(), None, path, None, None, metrics, ManualClock(NOW))  # type: ignore[arg-type]

    with pytest.raises(StoreUnusable, match=r"\(officer 321200/off-1: JSONDecodeError"):
        async with rule():
            pass
    reset_store(path, NOW)
    async with rule() as r:
        assert r.officers == {}


def test_alert_numbers_and_notification_ids_are_not_reused_after_a_reset(tmp_path: Path) -> None:
    path = made(tmp_path, "alerts.sqlite")
    first = AlertStore(path, NOW)
    assert first.max_id() == 0, "a new data directory numbers its alerts from 1"
    first.db.execute(
        "INSERT INTO alerts (id, fingerprint, status, updated_at, doc) VALUES (41, 'f', 'x', 0, '')"
    )
    first.close()
    path.write_bytes(b"")
    reset_store(path, NOW + 60)
    second = AlertStore(path, NOW + 60)
    assert second.max_id() == id_floor(NOW + 60) > 41
    assert second.epoch != first.epoch
    second.close()
    reopened = AlertStore(path, NOW + 120)
    assert reopened.max_id() == id_floor(NOW + 60), "the floor is kept in the store"
    assert len(str(reopened.max_id())) <= 12, "the API takes alert numbers of up to 12 digits"
    reopened.close()
