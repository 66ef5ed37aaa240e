"""Slow clients against the real service over real sockets: deadlines, the cap, few files.

A slowloris client opens a connection and sends its request a little at a time, or
not at all; enough of them used to hold every connection (and file descriptor) for
as long as they liked. The server must cut them off after ``api.header_timeout`` /
``api.body_timeout``, make room for new clients at ``api.max_connections``, back off
when ``accept()`` runs out of files, and say so in one log line per condition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from citywatch.app.service import Service
from tests.helpers import settings_for
from tests.services import Influx, Mosquitto

LIMITS = {"header_timeout": 0.5, "body_timeout": 0.5, "idle_timeout": 1.5, "max_connections": 20}
# Three kinds of slow client: says nothing, sends half a head, sends half a declared body.
SLOW_STARTS = (
    b"",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b"POST /api/v1/alerts/1/ack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
)


def _messages(caplog: pytest.LogCaptureFixture, logger: str, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and words in r.getMessage()]


async def _open_slow(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    out = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SLOW_STARTS[i % len(SLOW_STARTS)])
        out.append((reader, writer))
    return out


async def _ended(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (a reset counts as closed)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_slow_clients_are_cut_off_and_new_ones_still_get_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for("mqtt://127.0.0.1:1", "", "unused", tmp_path / "var", api=LIMITS)
    async with Service(settings, ["api"]) as svc, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{svc.http_port}"
        assert svc.http_port is not None
        # Half again as many slow clients as there are connections.
        slow = await _open_slow(svc.http_port, 30)
        opened = time.monotonic()
        # A new client still gets in, and at once: the longest-waiting slow one makes room.
        async with asyncio.timeout(1):
            async with session.get(base + "/healthz") as r:
                assert r.status == 200
        # Every slow client is cut off once its deadline passes (or made room before).
        async with asyncio.timeout(LIMITS["header_timeout"] + 2):
            ends = await asyncio.gather(*(_ended(reader) for reader, _ in slow))
        assert time.monotonic() - opened < LIMITS["header_timeout"] + 2
        assert any(e.startswith(b"HTTP/1.1 408 ") for e in ends), ends
        # A kept-alive connection is closed once idle for idle_timeout, not header_timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await reader.readuntil(b'{"status": "ok"}')
        assert answer.startswith(b"HTTP/1.1 200 ")
        idle_since = time.monotonic()
        assert await asyncio.wait_for(_ended(reader), LIMITS["idle_timeout"] + 2) == b""
        assert time.monotonic() - idle_since >= LIMITS["idle_timeout"] - 0.1
        writer.close()
        for _, w in slow:
            w.close()
        # Each condition is one line when it starts and one when it ends, not one per client.
        deadline = time.monotonic() + 5
        while not _messages(caplog, "citywatch.api.connections", "no more slow connections"):
            assert time.monotonic() < deadline, "the slow-clients condition never ended"
            await asyncio.sleep(0.1)
        assert (
            len(_messages(caplog, "citywatch.api.connections", "connection limit reached (20)"))
            == 1
        )
        assert len(_messages(caplog, "citywatch.api.connections", "below the limit again")) == 1
        assert len(_messages(caplog, "citywatch.api.connections", "too slow to send")) == 1
        [ended] = _messages(caplog, "citywatch.api.connections", "no more slow connections")
        assert re.search(r"closed \d+ before their headers .* \d+ before their body", ended)
        async with session.get(base + "/metrics") as r:
            text = await r.text()
        assert re.search(r'citywatch_http_connections_closed_total\{reason="evicted"\} 1[01]', text)
        assert 'reason="header_timeout"' in text and 'reason="body_timeout"' in text
    assert not [r for r in caplog.records if "out of system resource" in r.getMessage()]


async def test_a_handler_waiting_for_a_slow_body_is_cut_off_quietly(
    mosquitto: Mosquitto,
    influx: Influx,
    influx_db: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "var", api=LIMITS)
    async with Service(settings, ["collector", "rules"]) as svc:
        assert svc.http_port is not None and svc.alerting is not None
        slow = await _open_slow(svc.http_port, 3)
        reader, _ = slow[2]  # half a body, which the acknowledgement's handler waits for
        started = time.monotonic()
        assert await asyncio.wait_for(_ended(reader), LIMITS["body_timeout"] + 2) == b""
        assert time.monotonic() - started >= LIMITS["body_timeout"] - 0.1
        for _, w in slow:
            w.close()
        await asyncio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


async def test_running_out_of_files_backs_off_with_one_line(tmp_path: Path) -> None:
    """The service in a process that may open 64 files, against 100 slow clients."""
    config = tmp_path / "citywatch.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "var"), "api": {"addr": "127.0.0.1:0"}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "citywatch",
        "run",
        "--only",
        "api",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=_few_files,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    port = asyncio.get_running_loop().create_future()

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            lines.append(line)
            found = re.search(r"HTTP on 127\.0\.0\.1:(\d+)", line)
            if found and not port.done():
                port.set_result(int(found.group(1)))

    reading = asyncio.create_task(read_log())
    try:
        http_port = await asyncio.wait_for(port, 30)
        slow = await _open_slow(http_port, 100)
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(1):
                async with session.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                    assert r.status == 200
            for _, w in slow:
                w.close()
            deadline = time.monotonic() + 5
            while not any("accept() works again" in line for line in lines):
                assert time.monotonic() < deadline, "".join(lines[-20:])
                await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
        await reading
    assert not [line for line in lines if "out of system resource" in line]
    assert len([line for line in lines if "accept() fails" in line]) == 1, "".join(lines)
    assert len([line for line in lines if "accept() works again" in line]) == 1
