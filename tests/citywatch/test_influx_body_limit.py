"""Writes are capped by points and bytes; a body InfluxDB refuses as too large is split.

Against a real InfluxDB 1.x with a small ``max-body-size`` (which 1.x applies to the body
as sent, gzip'd or not), nothing is dropped: not in direct writes, not in the spool.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from citywatch.influx import delivery
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.writer import InfluxWriter
from citywatch.models import Fix
from tests.helpers import await_until, spool_holding
from tests.services import Influx

LIMIT = 20_000  # InfluxDB's max-body-size in these tests
CITY = "321200"


@pytest.fixture(scope="module")
def small_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    with Influx(
        tmp_path_factory.mktemp("influx-small-body"),
        settings={"http": [f"max-body-size = {LIMIT}"]},
    ) as server:
        yield server


def fixes(n: int, device: str = "dev-1") -> list[Fix]:
    base = time.time() - 3600
    return [Fix(CITY, device, base + i, 32.45 + i * 1e-6, 119.92, base) for i in range(n)]


def refused_requests(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("citywatch_write_failures_total", {"retryable": "false"}) or 0


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_a_write_over_influxdbs_body_limit_is_split_not_dropped(
    small_influx: Influx, tmp_path: Path, gzip: bool
) -> None:
    db = f"big_{gzip}".lower()
    small_influx.create_db(db)
    registry = CollectorRegistry()
    # max_body above InfluxDB's limit: InfluxDB answers 413 and the writer halves.
    cfg = InfluxConfig(
        url=small_influx.url,
        db=db,
        batch_size=100_000,
        max_body=1024**2,
        gzip=gzip,
        flush_interval=0.05,
    )
    async with InfluxWriter(cfg, SpoolConfig(), tmp_path / "spool", WriterMetrics(registry)) as w:
        await w.write(fixes(6000))
        assert w.stats["written"] == 6000
        assert w.stats["dropped"] == 0
        assert len(w.spool) == 0
    assert small_influx.count("gps", db) == 6000
    assert refused_requests(registry) > 0, "InfluxDB answered 413 at least once"
    assert (
        registry.get_sample_value("citywatch_write_refused_points_total", {"reason": "too_large"})
        is None
    )


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_writes_and_spool_files_are_capped_by_points_and_bytes(
    small_influx: Influx, tmp_path: Path, gzip: bool
) -> None:
    db = f"capped_{gzip}".lower()
    small_influx.create_db(db)
    spool = tmp_path / "spool"
    cfg = InfluxConfig(url="", db=db, batch_size=150, max_body=16 * 1024, gzip=gzip)
    # No InfluxDB yet: one collector batch of 6000 points goes to the spool, capped.
    async with InfluxWriter(cfg, SpoolConfig(), spool, WriterMetrics(CollectorRegistry())) as w:
        await w.write(fixes(6000))
    files = sorted(spool.glob("*.lp"))
    assert len(files) > 1
    total = 0
    for f in files:
        lines, plain = delivery.decode(f.read_bytes())
        assert len(lines) <= 150
        assert plain <= 16 * 1024
        total += len(lines)
    assert total == 6000

    # With InfluxDB, the spool and then a new batch of 6000 go through without a 413.
    registry = CollectorRegistry()
    online = InfluxConfig(
        url=small_influx.url,
        db=db,
        batch_size=100_000,
        max_body=16 * 1024,
        gzip=gzip,
        flush_interval=0.05,
    )
    async with InfluxWriter(online, SpoolConfig(), spool, WriterMetrics(registry)) as w:
        await await_until(lambda: len(w.spool) == 0, what="replay")
        await w.write(fixes(6000, device="dev-2"))
        assert w.stats["written"] == 6000
        assert w.stats["replayed"] == 6000
    assert small_influx.count("gps", db) == 12000
    assert refused_requests(registry) == 0


async def test_a_spool_file_over_the_limits_from_an_earlier_version_is_split(
    small_influx: Influx, tmp_path: Path
) -> None:
    small_influx.create_db("old_spool")
    t = int((time.time() - 600) * 1e9)
    lines = [f"gps,city={CITY},device=dev-9 lat=32.0,lon=119.0 {t + i}" for i in range(5000)]
    body = "\n".join(lines).encode()
    assert len(body) > LIMIT
    spool = spool_holding(tmp_path, body, first=7)
    registry = CollectorRegistry()
    cfg = InfluxConfig(url=small_influx.url, db="old_spool", max_body=16 * 1024, gzip=False)
    async with InfluxWriter(cfg, SpoolConfig(), spool, WriterMetrics(registry)) as w:
        await await_until(lambda: len(w.spool) == 0, what="replay")
    assert small_influx.count("gps", "old_spool") == 5000
    assert refused_requests(registry) == 0
