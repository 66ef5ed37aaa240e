"""Fixtures of the notifier tests: the fake vendor server, a client session, a dead port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.alerting.notifiers.fake_vendors import FakeVendors


@pytest.fixture
async def vendors() -> AsyncIterator[FakeVendors]:
    """The fake vendor server on a free local port, answering normally until told otherwise."""
    fake = FakeVendors()
    runner = web.AppRunner(fake.app(), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        fake.release.set()  # lets a "slow" handler finish so the server stops promptly
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The caller-owned session the notifiers are given."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def dead_base() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` where a connection is refused: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
