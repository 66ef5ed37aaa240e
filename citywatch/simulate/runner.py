"""Publish a simulated fleet to an MQTT broker in real or sped-up time.

At normal speed the simulated clock starts at the real current time. Sped up,
it starts ``history`` in the past (a shift, by default), replays it fast and
then runs at the wall clock's pace: it never runs ahead of the wall clock,
since the service rightly refuses timestamps from the future. One
MQTT connection carries every device's traffic, so device wills are
simulated as retained ``offline`` status messages.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citywatch.config import BrokerAddress, ConfigError, parse_duration, parse_mqtt_url
from citywatch.simulate.fleet import Fleet, SimConfig
from citywatch.simulate.grid import make_district, write_geojson
from citywatch.simulate.message import Message, message_kind

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
_TICK = 0.2
_CONNECT_TIMEOUT = 10.0
_DRAIN_TIMEOUT = 10.0
_MAX_PENDING = 10_000
_KINDS = ("gps", "heartbeat", "status", "shift", "case")


@dataclass
class SimStats:
    """What a run published. Times are simulated Unix seconds."""

    devices: int
    started_at: float
    ended_at: float
    published: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    wall_seconds: float = 0.0

    @property
    def total(self) -> int:
        """Messages published, all kinds together."""
        return sum(self.published.values())

    def summary(self) -> str:
        """A one-line account of the run."""
        kinds = ", ".join(f"{k} {self.published.get(k, 0)}" for k in _KINDS)
        line = (
            f"{self.total} messages ({kinds}) from {self.devices} devices over "
            f"{self.ended_at - self.started_at:.0f}s simulated in {self.wall_seconds:.1f}s"
        )
        return line + (f", {self.unconfirmed} unconfirmed" if self.unconfirmed else "")


def _connect(addr: BrokerAddress, client_id: str, stop: threading.Event) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
    )
    if addr.username is not None:
        client.username_pw_set(addr.username, addr.password)
    if addr.tls:
        client.tls_set()
    client.max_inflight_messages_set(100)
    connected = threading.Event()
    outcome: list[Any] = []

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome.append(reason)
        connected.set()

    client.on_connect = on_connect
    client.connect(addr.host, addr.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while not connected.is_set() and not stop.is_set():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise ConnectionError(f"no answer from MQTT broker {addr.host}:{addr.port}")
        stop.wait(_TICK / 4)
    if outcome and getattr(outcome[0], "is_failure", False):
        client.loop_stop()
        raise ConnectionError(f"MQTT broker {addr.host}:{addr.port} refused: {outcome[0]}")
    return client


def _drain(pending: deque[mqtt.MQTTMessageInfo]) -> int:
    deadline = time.monotonic() + _DRAIN_TIMEOUT
    for info in pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            info.wait_for_publish(timeout=remaining)
        except (RuntimeError, ValueError):
            continue
    return sum(not info.is_published() for info in pending)


DEFAULT_HISTORY = 8 * 3600.0
"""How far in the past a sped-up simulation starts: one shift."""


def run_simulation(
    config: SimConfig,
    mqtt_url: str,
    *,
    speedup: float = 1.0,
    duration: float | None = None,
    max_messages: int | None = None,
    grids_out: Path | None = None,
    stop: threading.Event | None = None,
    client_id: str = "citywatch-sim",
    on_message: Callable[[Message], None] | None = None,
    history: float | None = None,
) -> SimStats:
    """Publish the fleet's messages to ``mqtt_url`` until duration, max_messages or stop.

    ``duration`` is in simulated seconds; each message goes out when the
    simulated clock, running ``speedup`` times faster than the wall clock,
    reaches it. ``on_message`` sees every message after it is handed to the
    client. Raises ``ConnectionError``/``OSError`` if the broker is unreachable.
    """
    if not speedup > 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    addr = parse_mqtt_url(mqtt_url)
    stop = stop or threading.Event()
    grid = make_district()
    if grids_out is not None:
        write_geojson(grid, grids_out)
    client = _connect(addr, client_id, stop)
    if history is None:
        history = DEFAULT_HISTORY if speedup > 1 else 0.0
    wall_start = time.time()
    sim_start, real_start = wall_start - history, time.monotonic()
    fleet = Fleet(config, grid, sim_start)
    end = None if duration is None else sim_start + duration
    counts: Counter[str] = Counter()
    stats = SimStats(config.devices, sim_start, sim_start, published={})
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    sent = 0
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - real_start
            sim_now = min(sim_start + elapsed * speedup, wall_start + elapsed)
            sim_now = sim_now if end is None else min(sim_now, end)
            for msg in fleet.advance(sim_now):
                if stop.is_set() or (max_messages is not None and sent >= max_messages):
                    break
                pending.append(client.publish(msg.topic, msg.payload, msg.qos, msg.retain))
                sent += 1
                counts[message_kind(msg.topic)] += 1
                if on_message is not None:
                    on_message(msg)
                while pending and pending[0].is_published():
                    pending.popleft()
                while len(pending) > _MAX_PENDING and not stop.wait(_TICK / 4):
                    while pending and pending[0].is_published():
                        pending.popleft()
            stats.ended_at = sim_now
            if (max_messages is not None and sent >= max_messages) or (
                end is not None and sim_now >= end
            ):
                break
            due = fleet.next_due
            target = min(due if due is not None else math.inf, end if end is not None else math.inf)
            # Sped up while catching up with the wall clock, real time after.
            delay = max((target - sim_start) / speedup, target - wall_start) - (
                time.monotonic() - real_start
            )
            stop.wait(min(_TICK, max(0.0, delay)))
    finally:
        stats.unconfirmed = _drain(pending)
        client.disconnect()
        client.loop_stop()
        stats.published = dict(counts)
        stats.wall_seconds = time.monotonic() - real_start
    return stats


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``citywatch simulate`` options to ``parser``."""
    d = SimConfig()
    add = parser.add_argument
    add(
        "--devices", type=int, default=d.devices, help="handhelds to simulate (default %(default)s)"
    )
    add(
        "--fix-interval",
        type=_duration_arg,
        default=d.fix_interval,
        metavar="DURATION",
        help="time between GPS fixes per device (default %(default)ss)",
    )
    add(
        "--cases-per-day",
        type=float,
        default=d.cases_per_day,
        help="mean cases reported per day (default %(default)s)",
    )
    add(
        "--speedup",
        type=_positive,
        default=1.0,
        help="simulated seconds per real second; above 1 the simulation starts one shift "
        "(8 h) in the past and replays it at this pace until it reaches the present "
        "(default %(default)s)",
    )
    add(
        "--duration",
        type=_duration_arg,
        default=None,
        metavar="DURATION",
        help="stop after this much simulated time, e.g. 30s, 15m, 2h",
    )
    add("--max-messages", type=int, default=None, help="stop after publishing this many")
    add("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    add(
        "--grids-out",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the district's grid cells as GeoJSON to PATH",
    )
    add(
        "--mqtt-url",
        default=os.environ.get("CITYWATCH_MQTT_URL") or DEFAULT_MQTT_URL,
        help="broker URL, mqtt[s]://[user:pass@]host:port (default $CITYWATCH_MQTT_URL or "
        f"{DEFAULT_MQTT_URL})",
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(args: argparse.Namespace) -> int:
    """Run ``citywatch simulate`` with parsed ``args``; returns the exit status."""
    try:
        config = SimConfig(
            devices=args.devices,
            fix_interval=args.fix_interval,
            cases_per_day=args.cases_per_day,
            seed=args.seed,
        )
        parse_mqtt_url(args.mqtt_url)
    except ValueError as exc:
        print(f"citywatch simulate: {exc}", file=sys.stderr)
        return 2
    stop, done = threading.Event(), threading.Event()
    counts: Counter[str] = Counter()
    began = time.monotonic()

    def report() -> None:
        while not done.wait(5.0):
            kinds = ", ".join(f"{k} {counts[k]}" for k in _KINDS)
            elapsed = time.monotonic() - began
            print(f"simulate: {counts.total()} messages ({kinds}) in {elapsed:.0f}s", flush=True)

    reporter = threading.Thread(target=report, name="simulate-progress", daemon=True)
    reporter.start()
    try:
        with _stop_on_signals(stop):
            stats = run_simulation(
                config,
                args.mqtt_url,
                speedup=args.speedup,
                duration=args.duration,
                max_messages=args.max_messages,
                grids_out=args.grids_out,
                stop=stop,
                on_message=lambda m: counts.update((message_kind(m.topic),)),
            )
    except (OSError, ConnectionError) as exc:
        print(f"citywatch simulate: cannot publish to {args.mqtt_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        done.set()
        reporter.join()
    print(f"simulate: done, {stats.summary()}", flush=True)
    return 0
