"""``citywatch demo``: an embedded broker, the simulator and the service, with a live summary.

With ``CITYWATCH_MQTT_URL`` set the demo uses that broker instead of starting
one; with ``CITYWATCH_INFLUX_URL`` set it writes to that InfluxDB, otherwise
batches wait in the spool under the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from citywatch.app.service import Service
from citywatch.app.settings import Settings, load_settings
from citywatch.models import DeviceStatus, Fix, Heartbeat, Record, Rejected


class LiveStats:
    """A sink that keeps the figures the summary shows."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.last_seen: dict[str, float] = {}
        self.offline: set[str] = set()
        self.total = 0

    async def write(self, records: Sequence[Record]) -> None:
        for r in records:
            self.total += 1
            self.kinds[type(r).__name__] += 1
            if isinstance(r, Fix | Heartbeat):
                self.last_seen[r.device] = r.received_at
            elif isinstance(r, DeviceStatus):
                (self.offline.discard if r.online else self.offline.add)(r.device)
            elif isinstance(r, Rejected):
                pass

    def online(self, now: float, window: float) -> int:
        return sum(
            1 for d, t in self.last_seen.items() if now - t < window and d not in self.offline
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_broker(port: int) -> AsyncIterator[str]:
    """An in-process MQTT broker (amqtt) on 127.0.0.1:``port``."""
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
    )
    await broker.start()
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        await broker.shutdown()


OFFICERS = "citywatch_patrol_officers"
PUSHED = "citywatch_notifications_sent_total"


def _open_alerts(service: Service) -> int:
    alerting = service.alerting
    return 0 if alerting is None else sum(a.is_open for a in alerting.by_id.values())


def _sample(service: Service, name: str, **labels: str) -> float:
    return service.registry.get_sample_value(name, labels or None) or 0.0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


async def run_demo(args: argparse.Namespace) -> int:
    from citywatch.simulate import SimConfig, make_district, run_simulation
    from citywatch.simulate.grid import write_geojson

    settings: Settings = load_settings(getattr(args, "config", None))
    external = os.environ.get("CITYWATCH_MQTT_URL")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        if external:
            url = external
        else:
            url = await stack.enter_async_context(embedded_broker(_free_port()))
        api_host, api_port = settings.api.host_port
        with socket.socket() as s:
            try:
                s.bind((api_host, api_port))
                api_addr = settings.api.addr
            except OSError:
                api_addr = f"{api_host}:0"
        grids_file = settings.grids_file
        if not grids_file:
            # The simulated district's cells, so that the patrol rules have grids to check.
            settings.data_path.mkdir(parents=True, exist_ok=True)
            grids_file = str(settings.data_path / "demo-grids.geojson")
            write_geojson(make_district(), grids_file)
        settings = dataclasses.replace(
            settings,
            grids_file=grids_file,
            mqtt=dataclasses.replace(settings.mqtt, url=url, client_id="citywatch-demo"),
            api=dataclasses.replace(settings.api, addr=api_addr),
        )
        stats = LiveStats()
        service = await stack.enter_async_context(Service(settings, extra_sinks=[stats]))
        sim_stop = threading.Event()
        sim_cfg = SimConfig(devices=args.devices, topic_root=settings.mqtt.topic_root)
        sim = loop.run_in_executor(
            None,
            lambda: run_simulation(
                sim_cfg, url, speedup=args.speedup, stop=sim_stop, client_id="citywatch-demo-sim"
            ),
        )
        spool_dir = settings.data_path / "spool"
        influx = settings.influx.url or f"none (spooling to {spool_dir})"
        print(
            f"citywatch demo — broker {url}{'' if external else ' (embedded)'}, InfluxDB {influx}, "
            f"console http://{api_host}:{service.http_port}/ — Ctrl-C to stop",
            flush=True,
        )
        started = time.monotonic()
        last_total, last_t = 0, started
        writer = service.writer
        assert writer is not None
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
                now = time.monotonic()
                rate = (stats.total - last_total) / max(now - last_t, 1e-6)
                last_total, last_t = stats.total, now
                k = stats.kinds
                online = stats.online(time.time(), 90 / args.speedup + 30)
                line = (
                    f"{time.strftime('%H:%M:%S')}  devices online {online:3d}/{args.devices}"
                    f"  msgs/s {rate:6.1f}  fixes {k['Fix']:6d}  heartbeats {k['Heartbeat']:5d}"
                    f"  shifts {k['ShiftEvent']:3d}  case events {k['CaseEvent']:4d}"
                    f"  rejected {k['Rejected']:3d}"
                    f"  | written {writer.stats['written']:7d}"
                    f"  spooled {writer.stats['spooled']:7d}"
                    f"  spool {_fmt_bytes(writer.spool.bytes)}"
                    f"  | cases open {_sample(service, 'citywatch_cases_open'):4.0f}"
                    f" yellow {_sample(service, 'citywatch_case_steps_lit', light='yellow'):3.0f}"
                    f" red {_sample(service, 'citywatch_case_steps_lit', light='red'):3.0f}"
                    f"  | officers idle {_sample(service, OFFICERS, state='idle'):3.0f}"
                    f" out of grid {_sample(service, OFFICERS, state='out_of_grid'):3.0f}"
                    f" gps lost {_sample(service, OFFICERS, state='gps_lost'):3.0f}"
                    f" offline {_sample(service, OFFICERS, state='offline'):3.0f}"
                    f"  | alerts open {_open_alerts(service):3d}"
                    f" pushed {_sample(service, PUSHED, channel='mqtt'):5.0f}"
                )
                print(line, flush=True)
                if args.duration is not None and now - started >= args.duration:
                    break
        finally:
            sim_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sim, 10)
    print("demo stopped", file=sys.stderr)
    return 0
