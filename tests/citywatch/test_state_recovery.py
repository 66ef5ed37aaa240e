"""``citywatch run`` over a state store emptied or damaged while it was stopped.

It must not start afresh silently (its alerts would be numbered again and the
handhelds drop pushes whose id they have seen), nor stop with a traceback that
names no file: exit code 3 and one line naming the file and the recovery.
``--reset-state`` moves the store aside and starts; its alerts have new ids.

One real run (real Mosquitto and InfluxDB, an officer's handheld going offline)
leaves a data directory that each test copies and spoils.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from citywatch.sqlite import read_manifest
from tests.helpers import Listener, Publisher, service_env, shift_start, wait_until
from tests.services import Influx, Mosquitto, free_port

CITY = "321200"
STORES = ("cases.sqlite", "patrols.sqlite", "alerts.sqlite")
STAMP = "[0-9]" * 8 + "T" + "[0-9]" * 6 + "Z"  # NAME.reset-<UTC time>, not its -wal or -shm


@dataclass
class Cli:
    """Runs ``citywatch run`` on a data directory, against the test servers."""

    mosquitto: Mosquitto
    influx: Influx
    db: str
    data: Path

    def _env(self, api_port: int) -> dict[str, str]:
        return service_env(self.mosquitto.url, self.influx.url, self.db, api_port, self.data)

    def _cmd(self, *extra: str) -> list[str]:
        config = self.data.parent / "cw.yaml"
        config.write_text(
            orjson.dumps(
                {
                    "mqtt": {"client_id": f"st-{uuid.uuid4().hex[:8]}"},
                    "patrols": {"offline": {"after": "1s"}},
                }
            ).decode()
        )
        return [sys.executable, "-m", "citywatch", "run", "--config", str(config), *extra]

    def refused(self) -> str:
        """Run until it exits; returns the last line, checked to be a refusal."""
        out = subprocess.run(
            self._cmd(), env=self._env(free_port()), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 3, out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        return out.stderr.strip().splitlines()[-1]

    def start(self, *extra: str) -> Service:
        port = free_port()
        log = self.data.parent / "service.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(self._cmd(*extra), env=self._env(port), stdout=fh, stderr=fh)
        svc = Service(proc, port, log)
        wait_until(svc.ready, what="service ready")
        return svc


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0, self.log.read_text()


def offline_push(mosquitto: Mosquitto, officer: str, lead: str) -> dict[str, Any]:
    """Start an officer's shift; their handheld sends nothing: the push to their lead."""
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/{lead}") as listener:
        with Publisher(mosquitto.port) as pub:
            start = shift_start(f"dev-{officer}", lead)
            pub.send_all([(f"citywatch/{CITY}/officers/{officer}/shift", start)])
        doc: dict[str, Any] = orjson.loads(listener.wait_for(1)[0][1])
        assert doc["rule"] == "device_offline" and doc["officer"] == officer
        return doc


@dataclass
class FirstRun:
    data: Path
    push: dict[str, Any]
    db: str


@pytest.fixture(scope="module")
def first_run(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FirstRun]:
    with influx.fresh_db() as db:
        data = tmp_path_factory.mktemp("first") / "var"
        svc = Cli(mosquitto, influx, db, data).start()
        try:
            push = offline_push(mosquitto, "off-1", "lead-1")
        finally:
            svc.stop()
        assert all((data / name).stat().st_size > 0 for name in STORES)
        yield FirstRun(data, push, db)


@pytest.fixture
def cli(first_run: FirstRun, mosquitto: Mosquitto, influx: Influx, tmp_path: Path) -> Cli:
    """A copy of the first run's data directory."""
    shutil.copytree(first_run.data, tmp_path / "var")
    return Cli(mosquitto, influx, first_run.db, tmp_path / "var")


@pytest.mark.parametrize("name", STORES)
def test_an_emptied_store_stops_the_start_until_reset(
    cli: Cli, first_run: FirstRun, mosquitto: Mosquitto, name: str
) -> None:
    store = cli.data / name
    store.write_bytes(b"")
    line = cli.refused()
    assert line == (
        f"citywatch: state store {store} is empty (0 bytes): restore it from a backup, or start"
        " with `citywatch run --reset-state` to move it aside and begin afresh"
    )
    before = read_manifest(cli.data)
    svc = cli.start("--reset-state")
    try:
        assert [p.stat().st_size for p in cli.data.glob(f"{name}.reset-{STAMP}")] == [0]
        after = read_manifest(cli.data)
        assert {n: after[n] for n in STORES if n != name} == {
            n: before[n] for n in STORES if n != name
        }, "the other stores are kept"
        assert after[name]["replaced"] == before[name]["epoch"] != after[name]["epoch"]
        assert "moved aside" in svc.log.read_text()
        # Another officer of the same lead: with the numbers started again, the same push id.
        push = offline_push(mosquitto, "off-2", "lead-1")
    finally:
        svc.stop()
    assert push["id"] != first_run.push["id"]
    assert push["alert_id"] != first_run.push["alert_id"]


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00citywatch\xff" * 2000)


def _bad_page(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xa5" * 4096)


def _bad_json(table: str, column: str) -> Any:
    def spoil(path: Path) -> None:
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(f"UPDATE {table} SET {column} = ?", (b'{"city": "321200", "off',))
            assert db.total_changes == 1

    return spoil


DAMAGE = {
    "garbage": ("alerts.sqlite", _garbage, "is damaged (file is not a database)"),
    "page": ("cases.sqlite", _bad_page, "is damaged (database disk image is malformed)"),
    "officer": (
        "patrols.sqlite",
        _bad_json("officers", "doc"),
        "has a row that cannot be decoded (officer 321200/off-1: JSONDecodeError",
    ),
    "alert": (
        "alerts.sqlite",
        _bad_json("alerts", "doc"),
        "has a row that cannot be decoded (alert 1: JSONDecodeError",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_store_stops_the_start_with_one_line(cli: Cli, damage: str) -> None:
    name, spoil, problem = DAMAGE[damage]
    store = cli.data / name
    spoil(store)
    line = cli.refused()
    assert line.startswith(f"citywatch: state store {store} {problem}"), line
    assert line.endswith(
        ": restore it from a backup, or start with `citywatch run --reset-state`"
        " to move it aside and begin afresh"
    )


def test_reset_state_moves_a_damaged_store_aside(cli: Cli) -> None:
    store = cli.data / "patrols.sqlite"
    _bad_json("officers", "doc")(store)
    cli.start("--reset-state").stop()
    (aside,) = cli.data.glob(f"patrols.sqlite.reset-{STAMP}")
    with contextlib.closing(sqlite3.connect(aside)) as db:
        assert db.execute("SELECT doc FROM officers").fetchone()[0].startswith(b'{"city"')
    cli.start().stop()  # afresh, and fine from then on
