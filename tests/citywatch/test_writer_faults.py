"""The writer when storage fails: a spool that cannot be written or cleaned, readiness,
what is logged during an outage, and how soon the replay starts once InfluxDB is back.

InfluxDB is real and stopped, frozen (SIGSTOP) or restarted by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from citywatch.influx import spool as spool_module
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.writer import InfluxWriter
from citywatch.models import Fix
from citywatch.sink import SinkUnavailable
from tests.helpers import await_until, spool_holding
from tests.services import Influx, free_port

CITY = "321200"
WRITER_LOG = "citywatch.influx"


def metrics() -> WriterMetrics:
    return WriterMetrics(CollectorRegistry())


def fixes(n: int, start: int = 0, device: str = "dev-1") -> list[Fix]:
    base = time.time() - 3600
    return [Fix(CITY, device, base + i, 32.45, 119.92, base) for i in range(start, start + n)]


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files and removals, as root too.

    Not root: take away write permission (reads still work). Root ignores permissions, so
    the directory is moved aside and a file put in its place: every operation in it then
    fails (ENOTDIR), which needs no mount or capability.
    """
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_bytes(b"")
    try:
        yield
    finally:
        directory.unlink()
        aside.rename(directory)


async def refused_batches(w: InfluxWriter, batches: int, size: int) -> int:
    """Write ``batches`` batches of ``size`` new fixes; how many the writer refused."""
    refused = 0
    for k in range(batches):
        try:
            await w.write(fixes(size, start=size * k))
        except SinkUnavailable:
            refused += 1
    return refused


def writer_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(WRITER_LOG) and r.levelno >= level
    ]


async def test_a_replayed_batch_whose_file_cannot_be_removed(
    make_influx: Callable[..., Influx], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    influx = make_influx()
    influx.create_db("cw")
    spool = tmp_path / "spool"
    offline = InfluxConfig(url="", db="cw", batch_size=100, flush_interval=0.05)
    async with InfluxWriter(offline, SpoolConfig(), spool, metrics()) as w:
        for k in range(3):
            await w.write(fixes(100, start=100 * k))
    assert len(list(spool.glob("*.lp"))) == 3

    caplog.set_level(logging.INFO, logger=WRITER_LOG)
    registry = CollectorRegistry()
    cfg = InfluxConfig(
        url=influx.url, db="cw", batch_size=100, flush_interval=0.05, timeout=30, create_db=False
    )
    pid = influx.pid
    assert pid is not None
    # Frozen, InfluxDB takes the replay's first request and answers only once thawed: the
    # spool directory fails between the write and the removal of its file.
    os.kill(pid, signal.SIGSTOP)
    try:
        async with InfluxWriter(cfg, SpoolConfig(), spool, WriterMetrics(registry)) as w:
            await asyncio.sleep(1.0)
            with unwritable(spool):
                os.kill(pid, signal.SIGCONT)
                await await_until(lambda: influx.count("gps", "cw") == 100, what="first batch")
                await await_until(lambda: not w.ready()[0], what="not ready")
                assert "spool not writable" in w.ready()[1]
                # New data is not acknowledged: older batches wait in a spool that cannot
                # take it.
                with pytest.raises(SinkUnavailable):
                    await asyncio.wait_for(w.write(fixes(1, start=1000)), 10)
                await asyncio.sleep(2.5)  # the removal is tried again, and again
                assert not [t.get_name() for t in w.tasks if t.done()], "a task ended"
                with pytest.raises(SinkUnavailable):
                    await asyncio.wait_for(w.write(fixes(1, start=1001)), 10)
                assert influx.count("gps", "cw") == 100
            await await_until(lambda: len(w.spool) == 0, what="replay after the spool is back")
            await w.write(fixes(5, start=2000))
            assert w.ready() == (True, "influxdb ok")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert influx.count("gps", "cw") == 305
    # Each spool batch was sent once: the one already written was removed, not resent.
    assert registry.get_sample_value("citywatch_write_batches_total", {"outcome": "replayed"}) == 3
    assert registry.get_sample_value("citywatch_write_points_total", {"outcome": "replayed"}) == 300
    spool_lines = [m for m in writer_lines(caplog) if "spool" in m and "replayed" not in m]
    assert len(spool_lines) == 2, spool_lines  # when it started, when it ended
    assert "works again" in spool_lines[1]


async def test_a_spool_directory_unreadable_at_start_holds_data_back_until_it_works(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    offline = InfluxConfig(url="", db=influx_db, batch_size=50, flush_interval=0.05)
    async with InfluxWriter(offline, SpoolConfig(), spool, metrics()) as w:
        await w.write(fixes(100))
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    if os.geteuid() != 0:
        spool.chmod(0o000)
    else:
        spool.rename(tmp_path / "aside")
        spool.write_bytes(b"")
    try:
        async with InfluxWriter(cfg, SpoolConfig(), spool, metrics()) as w:
            ready, detail = w.ready()
            assert not ready and "not writable" in detail
            # What the spool may hold goes first: new data waits in the broker meanwhile.
            with pytest.raises(SinkUnavailable):
                await asyncio.wait_for(w.write(fixes(1, start=500)), 10)
            if os.geteuid() != 0:
                spool.chmod(0o755)
            else:
                spool.unlink()
                (tmp_path / "aside").rename(spool)
            await await_until(lambda: w.ready() == (True, "influxdb ok"), what="ready")
            await w.write(fixes(1, start=500))
    finally:
        if spool.is_dir():
            spool.chmod(0o755)
    assert influx.count("gps", influx_db) == 101


async def test_a_spool_file_that_is_not_line_protocol_is_set_aside(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    t = int((time.time() - 60) * 1e9)
    good = f"gps,city={CITY},device=d lat=1.0 {t}".encode()
    spool = spool_holding(tmp_path, b"\x1f\x8b cut short", good)
    registry = CollectorRegistry()
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    async with InfluxWriter(cfg, SpoolConfig(), spool, WriterMetrics(registry)) as w:
        await await_until(lambda: len(w.spool) == 0, what="replay")
        assert not [t.get_name() for t in w.tasks if t.done()]
    assert influx.count("gps", influx_db) == 1
    assert (spool / f"{1:020d}.corrupt").read_bytes() == b"\x1f\x8b cut short"
    assert registry.get_sample_value("citywatch_write_batches_total", {"outcome": "corrupt"}) == 1


# -- readiness ------------------------------------------------------------------------


async def test_not_ready_when_the_spool_cannot_take_a_batch_and_influxdb_is_down(
    tmp_path: Path,
) -> None:
    cfg = InfluxConfig(
        url=f"http://127.0.0.1:{free_port()}", db="cw", batch_size=20, gzip=False, timeout=2
    )
    spool_cfg = SpoolConfig(max_bytes=3000)
    async with InfluxWriter(cfg, spool_cfg, tmp_path / "spool", metrics()) as w:
        held = 20 * await refused_batches(w, 40, 20)
        assert held > 0, "the spool filled up"
        assert w.spool.bytes < spool_cfg.max_bytes  # not a byte left is not the point
        ready, detail = w.ready()
        assert not ready, detail
        assert "spool full" in detail and "InfluxDB unavailable" in detail


async def test_not_ready_while_the_spool_disk_is_full_and_influxdb_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cfg = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", db="cw", timeout=2)
    async with InfluxWriter(cfg, SpoolConfig(), tmp_path / "spool", metrics()) as w:
        # The spool module's open(): the rest of the process keeps the real one.
        monkeypatch.setattr(spool_module, "open", disk_full, raising=False)
        full = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 900, 900, 0, 255))
        monkeypatch.setattr(os, "statvfs", lambda path: full)
        with pytest.raises(SinkUnavailable):
            await asyncio.wait_for(w.write(fixes(10)), 10)
        ready, detail = w.ready()
        assert not ready and "No space left on device" in detail, detail
        # Room again: the spool is probed, and the writer is ready without a new batch.
        monkeypatch.undo()
        await await_until(lambda: w.ready()[0], timeout=5, what="ready again")
        await asyncio.wait_for(w.write(fixes(10)), 10)
        assert len(w.spool) == 1


async def test_readiness_asks_influxdb_first(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    dead = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", db="cw")
    async with InfluxWriter(dead, SpoolConfig(), tmp_path / "a", metrics()) as w:
        assert w.ready()[1] != "influxdb ok", "nothing has answered yet"
        await await_until(lambda: "InfluxDB unavailable" in w.ready()[1], what="probe", timeout=5)
        ready, detail = w.ready()
        assert ready and detail.startswith("spooling (0 batches)"), detail
    live = InfluxConfig(url=influx.url, db=influx_db)
    async with InfluxWriter(live, SpoolConfig(), tmp_path / "b", metrics()) as w:
        await await_until(lambda: w.ready() == (True, "influxdb ok"), what="probe", timeout=5)


async def test_not_ready_with_influxdb_down_and_no_spool(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")  # the spool's parent is a file: no spool at all, root or not
    dead = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", db="cw")
    async with InfluxWriter(dead, SpoolConfig(), blocker / "spool", metrics()) as w:
        await await_until(lambda: "InfluxDB unavailable" in w.ready()[1], what="probe", timeout=5)
        ready, detail = w.ready()
        assert not ready and "spool not writable" in detail
        with pytest.raises(SinkUnavailable):
            await asyncio.wait_for(w.write(fixes(1)), 10)


# -- an outage: what is logged, how soon the replay starts ----------------------------


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    make_influx: Callable[..., Influx], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    influx = make_influx()
    influx.create_db("cw")
    influx.stop()
    caplog.set_level(logging.DEBUG, logger=WRITER_LOG)
    cfg = InfluxConfig(url=influx.url, db="cw", batch_size=10, gzip=False, flush_interval=0.01)
    spool_cfg = SpoolConfig(max_bytes=2000)
    async with InfluxWriter(cfg, spool_cfg, tmp_path / "spool", metrics()) as w:
        held = await refused_batches(w, 100, 10)
        assert held > 50
        during = writer_lines(caplog)
        assert len(during) == 2, during  # InfluxDB unavailable; the spool full
        influx.start()
        await await_until(lambda: len(w.spool) == 0, what="replay")
        await w.write(fixes(10, start=5000))
    after = writer_lines(caplog)[2:]
    assert len(after) == 2, after  # InfluxDB back; batches stored again
    assert "InfluxDB takes writes again" in after[0]
    assert "batches are stored again" in after[1]


async def test_the_replay_starts_within_a_second_or_two_of_influxdb_coming_back(
    make_influx: Callable[..., Influx], tmp_path: Path
) -> None:
    influx = make_influx()
    influx.create_db("cw")
    influx.stop()
    registry = CollectorRegistry()
    cfg = InfluxConfig(url=influx.url, db="cw", flush_interval=0.05, retry_max=30.0)

    def failures() -> float:
        return (
            registry.get_sample_value("citywatch_write_failures_total", {"retryable": "true"}) or 0
        )

    async with InfluxWriter(cfg, SpoolConfig(), tmp_path / "spool", WriterMetrics(registry)) as w:
        await w.write(fixes(50))
        assert len(w.spool) == 1
        # Long enough for a backoff that doubles to grow past a few seconds.
        await asyncio.sleep(6.0)
        # Come back just after a failed attempt, if the writer makes any.
        seen = failures()
        with contextlib.suppress(TimeoutError):
            await await_until(lambda: failures() > seen, timeout=1.5, what="an attempt")
        influx.start()
        back = time.monotonic()
        await await_until(lambda: len(w.spool) == 0, timeout=40, what="replay")
        waited = time.monotonic() - back
    assert influx.count("gps", "cw") == 50
    assert waited < 2.5, f"the replay started {waited:.1f} s after InfluxDB was back"
