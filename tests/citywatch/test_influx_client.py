"""The InfluxDB client and writer: 2.x request shape, error classes, refused points."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from citywatch.influx.client import InfluxClient, WriteError
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.writer import InfluxWriter
from citywatch.models import Fix, Heartbeat
from tests.helpers import string_lat_first
from tests.services import Influx, free_port


class Recorder:
    """A stand-in HTTP endpoint that records requests and answers with a set status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 204

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.Response(status=self.status, text="" if self.status < 300 else "nope")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield rec, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_v2_write_sends_org_bucket_token_and_gzip(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    cfg = InfluxConfig(url=url, token="s3cret", org="city", bucket="cw")
    async with aiohttp.ClientSession() as session:
        await InfluxClient(cfg, session).write(gzip.compress(b"m f=1 1"), gzipped=True)
    (req,) = rec.requests
    assert req["path"] == "/api/v2/write"
    assert req["query"] == {"org": "city", "bucket": "cw", "precision": "ns"}
    assert req["headers"]["Authorization"] == "Token s3cret"
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert req["body"] == b"m f=1 1"  # aiohttp's server inflated the gzip body


async def test_v1_write_uses_db(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    async with aiohttp.ClientSession() as session:
        await InfluxClient(InfluxConfig(url=url, db="cw"), session).write(b"m f=1 1", gzipped=False)
    assert rec.requests[0]["path"] == "/write"
    assert rec.requests[0]["query"] == {"db": "cw", "precision": "ns"}
    assert "Content-Encoding" not in rec.requests[0]["headers"]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (401, True), (404, True), (400, False), (413, False)],
)
async def test_write_errors_say_whether_to_retry(
    recorder: tuple[Recorder, str], status: int, retryable: bool
) -> None:
    rec, url = recorder
    rec.status = status
    cfg = InfluxConfig(url=url, token="s3cret", org="o", bucket="b")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WriteError) as err:
            await InfluxClient(cfg, session).write(b"m f=1 1", gzipped=False)
    assert err.value.retryable is retryable
    assert err.value.status == status
    assert "s3cret" not in str(err.value)


async def test_unreachable_influxdb_is_retryable() -> None:
    cfg = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WriteError) as err:
            await InfluxClient(cfg, session).write(b"m f=1 1", gzipped=False)
    assert err.value.retryable


async def test_points_refused_by_influxdb_are_counted_and_writing_goes_on(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    # A field of another type in the same shard makes InfluxDB 1.x refuse our points (400).
    now = time.time()
    string_lat_first(influx, influx_db, "321200", now - 10)
    registry = CollectorRegistry()
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    async with InfluxWriter(cfg, SpoolConfig(), tmp_path / "spool", WriterMetrics(registry)) as w:
        await w.write([Fix("321200", "dev-1", now - 5, 32.45, 119.92, now)])
        assert w.stats["dropped"] == 1
        assert len(w.spool) == 0, "an invalid batch is not spooled for ever"
        await w.write([Heartbeat("321200", "dev-1", now - 4, now, battery=50.0)])
        assert w.stats["written"] == 1
    assert registry.get_sample_value("citywatch_write_points_total", {"outcome": "dropped"}) == 1
    assert influx.count("heartbeat", influx_db) == 1
