"""Helpers for end-to-end tests: settings for real servers, a publisher, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citywatch.app.service import Service
from citywatch.app.settings import Settings, load_settings
from citywatch.models import AlertEvent, Rejected
from tests.services import Influx, Mosquitto, free_port

# A handheld is offline after 1 s of silence: an alert within a test's seconds.
FAST_OFFLINE = {"offline": {"after": "1s"}, "gps_lost": {"after": "30s"}}


def settings_for(
    mqtt_url: str,
    influx_url: str,
    db: str,
    data_dir: Path,
    **sections: dict[str, Any],
) -> Settings:
    """Settings pointing at the test servers, with short flush intervals and a unique client id."""
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "mqtt": {"url": mqtt_url, "client_id": f"cw-{uuid.uuid4().hex[:10]}"},
        "influx": {"url": influx_url, "db": db, "flush_interval": "100ms", "retry_max": "1s"},
        "api": {"addr": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = data_dir / "citywatch.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return load_settings(path, env={})


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, components: Iterable[str], *, push: bool = False, **kw: Any
) -> AsyncIterator[Service]:
    """The service's ``components`` in this process, once its source (and with ``push``, its
    alert publisher) is connected to the broker; ``kw`` go to :class:`Service`."""
    async with Service(settings, components, **kw) as svc:
        assert svc.source is not None
        await svc.source.wait_connected(10)
        if push:
            assert svc.push is not None
            await svc.push.wait_connected(10)
        yield svc


def with_client_id(settings: Settings, client_id: str) -> Settings:
    return dataclasses.replace(
        settings, mqtt=dataclasses.replace(settings.mqtt, client_id=client_id)
    )


class _Client:
    """A test's own paho client, running its loop; closed on leaving a ``with``."""

    client: mqtt.Client

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Publisher(_Client):
    """A paho publisher at QoS 1 that waits for the broker's acknowledgements."""

    def __init__(self, port: int, client_id: str | None = None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(
        self, topic: str, payload: bytes | dict[str, Any] | list[Any] | str, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        body = payload if isinstance(payload, bytes | str) else orjson.dumps(payload)
        return self.client.publish(topic, body, qos=1, retain=retain)

    def send_all(self, items: Iterable[tuple[str, Any]], timeout: float = 30) -> None:
        infos = [self.send(t, p) for t, p in items]
        for info in infos:
            info.wait_for_publish(timeout)


class Listener(_Client):
    """Subscribes to a topic filter and collects what arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"lis-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 15) -> list[tuple[str, bytes]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise TimeoutError(f"got {len(self.messages)} of {n} messages")
            return list(self.messages)


def shift_start(
    device: str, lead: str, grid: str = "321202001001001", ts: float | None = None
) -> dict[str, Any]:
    """The body of an inspector's shift start on ``grid`` with ``device``, reporting to ``lead``.

    Stamped now unless ``ts`` is given.
    """
    return {
        "ts": time.time() if ts is None else ts,
        "action": "start",
        "device": device,
        "grids": [grid],
        "lead": lead,
        "role": "inspector",
    }


class Collect:
    """An alert sink for a rule under test: keeps what it emits; a rejection fails the test."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        self.events.extend(events)

    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        raise AssertionError(rejected)


def spool_holding(tmp_path: Path, *batches: bytes, first: int = 1) -> Path:
    """A spool directory as an earlier run left it: ``batches`` in files numbered from ``first``."""
    spool = tmp_path / "spool"
    spool.mkdir()
    for n, body in enumerate(batches, first):
        (spool / f"{n:020d}.lp").write_bytes(body)
    return spool


def string_lat_first(influx: Influx, db: str, city: str, at: float) -> None:
    """Write a gps point whose lat is a string at `at`.

    InfluxDB 1.x then refuses (400) every float lat in that shard: a field type conflict.
    """
    influx.write(db, f'gps,city={city},device=dev-x lat="north" {int(at * 1e9)}')


def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    """Poll ``predicate`` until true (short interval, hard deadline)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def await_until(
    predicate: Callable[[], bool], timeout: float = 20, what: str = "condition"
) -> None:
    """The asyncio form of :func:`wait_until`; checks without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(predicate):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def service_env(
    mqtt_url: str, influx_url: str, db: str, api_port: int, data_dir: Path
) -> dict[str, str]:
    """The environment of a ``citywatch run`` process pointed at the test servers.

    The caller's own ``CITYWATCH_*`` variables are left out, so only these and the
    config file the test writes decide the settings.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    env.update(
        CITYWATCH_MQTT_URL=mqtt_url,
        CITYWATCH_INFLUX_URL=influx_url,
        CITYWATCH_INFLUX_DB=db,
        CITYWATCH_API_ADDR=f"127.0.0.1:{api_port}",
        CITYWATCH_DATA_DIR=str(data_dir),
    )
    return env


class ServiceProcess:
    """``python -m citywatch run ARGS`` as its own process; a context manager.

    Its data directory is ``workdir/var``; its API listens on :attr:`port` (a free
    one); its output is appended to ``workdir/service.log`` across restarts. Leaving
    the block stops it: SIGTERM, then SIGKILL if it does not exit within 10 s (a
    stuck event loop never handles SIGTERM).
    """

    def __init__(
        self, mosquitto: Mosquitto, influx: Influx, db: str, workdir: Path, args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.env = service_env(mosquitto.url, influx.url, db, self.port, workdir / "var")
        self.cmd = [sys.executable, "-m", "citywatch", "run", *args]
        self.log = workdir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        """Start the process (again, after :meth:`kill`)."""
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=fh, stderr=fh)
        return self.proc

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def metric(self, name: str, label: str = "") -> float:
        """The sum of the series of ``name`` whose labels contain ``label``; -1 if unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{")) and label in line
        )

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
