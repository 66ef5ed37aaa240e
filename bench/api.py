"""API throughput and the live stream's capacity, against the real service.

Each round starts the service in this process (collector and rules, real
Mosquitto and InfluxDB on free ports, an admin token, rate limits out of the
way) and loads it:

* ``--devices`` handhelds (10,000) each start a shift and send one fix over
  MQTT, the real ingest path; ``--alerts`` open alerts (1,000) are fed to
  alerting directly (``Alerting.emit``), the way the rules feed it, since
  making the rules raise exactly that many would take minutes of waiting;
* lists: a load generator in another process keeps ``--conns`` connections
  busy on one URL for ``--duration`` seconds (after a one-second warm-up) and
  reports requests/s and latency percentiles, for ``/api/v1/alerts`` and
  ``/api/v1/devices``, with the default page (100) and with ``limit=1000``;
* stream: K WebSocket clients (in ``--client-procs`` other processes)
  subscribe to ``/api/v1/stream?types=position``; a publisher process sends
  ``--fix-rate`` fixes a second over MQTT for ``--stream-seconds``; each
  client counts the position events it gets and their delay from the fix's
  ``ts`` (its publish time) to receipt. K passes if every client received at
  least 99% of the fixes sent, with p99 delay under 1 s. K grows through
  ``--clients`` until one fails.

The machine's cores are shared by the service, Mosquitto, InfluxDB, the load
generator and the clients: figures are for all of them on one box.

    python bench/api.py --rounds 2 --json bench/results/api.json
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import idle_event, parser, report  # noqa: E402
from citywatch.app.service import Service  # noqa: E402
from citywatch.app.settings import Settings, load_settings  # noqa: E402
from citywatch.models import AlertEvent  # noqa: E402
from citywatch.topics import DEFAULT_ROOT, gps_topic, shift_topic  # noqa: E402
from tests.services import Influx, Mosquitto  # noqa: E402

CITY = "321200"
GRID = "321202001001001"
TOKEN = "bench-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
PASS_SHARE = 0.99
PASS_P99_S = 1.0


def _device(i: int) -> str:
    return f"dev-{i:05d}"


def _fix(i: int, ts: float) -> dict[str, Any]:
    return {"ts": ts, "lat": 32.40 + (i % 100) * 1e-3, "lon": 119.90 + (i // 100) * 1e-4, "acc": 5}


def _settings(mq: Mosquitto, influx: Influx, db: str, work: Path) -> Settings:
    long = "1h"  # no liveness or idle alert during the run: the open alerts stay those fed
    raw = {
        "data_dir": str(work),
        "mqtt": {"url": mq.url, "client_id": f"bench-api-{uuid.uuid4().hex[:8]}"},
        "influx": {"url": influx.url, "db": db},
        "patrols": {
            "offline": {"after": long},
            "gps_lost": {"after": long},
            "idle": {"window": long},
        },
        "api": {
            "addr": "127.0.0.1:0",
            "tokens": [{"name": "bench", "token": TOKEN, "role": "admin"}],
            "rate_limit": 1e9,
            "rate_burst": 1_000_000_000,
        },
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / "citywatch.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_settings(path, env={})


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _send_all(client: mqtt.Client, items: list[tuple[str, Any]]) -> None:
    infos = [client.publish(topic, orjson.dumps(body), qos=1) for topic, body in items]
    for info in infos:
        info.wait_for_publish(120)


# --- load generator (its own process) ---------------------------------------------------


def loadgen(url: str, conns: int, duration: float, out: Any) -> None:
    """Keep ``conns`` requests in flight on ``url``; put counts and latency percentiles."""
    out.put(asyncio.run(_loadgen(url, conns, duration)))


async def _loadgen(url: str, conns: int, duration: float) -> dict[str, Any]:
    latencies = array("d")
    errors = 0
    size = 0
    measuring = False

    async def worker(session: aiohttp.ClientSession, until: float) -> None:
        nonlocal errors, size
        while time.monotonic() < until:
            t0 = time.perf_counter()
            async with session.get(url, headers=HEADERS) as r:
                body = await r.read()
                ok = r.status == 200
            if measuring:
                latencies.append(time.perf_counter() - t0)
                size = len(body)
                errors += not ok

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = time.monotonic() + 1.0
        await asyncio.gather(*(worker(session, warm) for _ in range(conns)))
        measuring = True
        t0 = time.monotonic()
        await asyncio.gather(*(worker(session, t0 + duration) for _ in range(conns)))
        elapsed = time.monotonic() - t0
    lat = np.frombuffer(latencies, dtype=np.float64) if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "bytes": size,
    }


# --- stream clients (their own processes) -----------------------------------------------


def stream_clients(url: str, k: int, ready: Any, stop: Any, out: Any) -> None:
    """Hold ``k`` stream connections until ``stop``; put each one's count and delays, and
    the process's CPU use (cores) meanwhile."""
    out.put(asyncio.run(_stream_clients(url, k, ready, stop)))


async def _stream_clients(url: str, k: int, ready: Any, stop: Any) -> dict[str, Any]:
    delays = [array("d") for _ in range(k)]
    resets = [0] * k

    async def reader(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                break
            now = time.time()
            doc = orjson.loads(msg.data)
            if doc["type"] == "position":
                delays[i].append(now - doc["device"]["ts"])
            elif doc["type"] == "reset":
                resets[i] += 1

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        sockets = []
        for _ in range(k):
            ws = await session.ws_connect(url, headers=HEADERS, max_msg_size=0, heartbeat=None)
            await ws.receive(timeout=30)  # hello
            sockets.append(ws)
        tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
        ready.put(k)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.to_thread(stop.wait)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = []
    for d, r in zip(delays, resets, strict=True):
        a = np.frombuffer(d, dtype=np.float64) if d else np.zeros(0)
        out.append(
            {
                "received": len(a),
                "resets": r,
                "p50_s": float(np.percentile(a, 50)) if len(a) else None,
                "p99_s": float(np.percentile(a, 99)) if len(a) else None,
                "max_s": float(a.max()) if len(a) else None,
            }
        )
    return {"cpu": cpu, "clients": out}


def fix_publisher(port: int, devices: int, rate: int, seconds: float, out: Any) -> None:
    """Publish ``rate`` fixes a second (QoS 1) round the devices; put how many and how fast."""
    pub = _publisher(port)
    total = int(rate * seconds)
    per_tick = max(1, rate // 100)
    infos = []
    t0 = time.monotonic()
    sent = 0
    while sent < total:
        wait = t0 + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        now = time.time()
        for _ in range(min(per_tick, total - sent)):
            i = sent % devices
            topic = gps_topic(DEFAULT_ROOT, CITY, _device(i))
            infos.append(pub.publish(topic, orjson.dumps(_fix(i, now)), qos=1))
            sent += 1
    elapsed = time.monotonic() - t0
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()
    out.put({"sent": sent, "rate": sent / elapsed})


# --- the service and one round ------------------------------------------------------------


def alert_event(i: int, now: float) -> AlertEvent:
    severity = "yellow" if i % 3 else "red"
    return idle_event(f"off-{i:05d}", _device(i), f"lead-{i % 50:02d}", GRID, now, severity)


def _populate(port: int, devices: int) -> None:
    now = time.time()
    items: list[tuple[str, Any]] = []
    for i in range(devices):
        shift = {
            "ts": now,
            "action": "start",
            "device": _device(i),
            "grids": [GRID],
            "lead": f"lead-{i % 50:02d}",
            "role": "inspector",
        }
        items.append((shift_topic(DEFAULT_ROOT, CITY, f"off-{i:05d}"), shift))
        items.append((gps_topic(DEFAULT_ROOT, CITY, _device(i)), _fix(i, now)))
    pub = _publisher(port)
    try:
        _send_all(pub, items)
    finally:
        pub.disconnect()
        pub.loop_stop()


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def one_round(
    args: argparse.Namespace, mq: Mosquitto, influx: Influx, work: Path
) -> dict[str, Any]:
    db = f"bench_{uuid.uuid4().hex[:8]}"
    influx.create_db(db)
    settings = _settings(mq, influx, db, work)
    ctx = mp.get_context("spawn")
    result: dict[str, Any] = {}
    async with Service(settings, ["collector", "rules"]) as svc:
        assert svc.source is not None and svc.board is not None and svc.alerting is not None
        board, alerting = svc.board, svc.alerting
        await svc.source.wait_connected(10)
        base = f"http://127.0.0.1:{svc.http_port}"
        t0 = time.monotonic()
        await asyncio.to_thread(_populate, mq.port, args.devices)
        await _until(
            lambda: (
                sum(d.fix is not None and d.officer is not None for d in board.devices.values())
                >= args.devices
            ),
            120,
            "the devices on the board",
        )
        now = time.time()
        for lo in range(0, args.alerts, 100):
            await alerting.emit(
                [alert_event(i, now) for i in range(lo, min(lo + 100, args.alerts))]
            )
        open_alerts = sum(a.is_open for a in alerting.by_id.values())
        result["setup_s"] = time.monotonic() - t0
        result["devices"] = len(board.devices)
        result["open_alerts"] = open_alerts
        print(
            f"  {result['devices']} devices, {open_alerts} open alerts "
            f"(set up in {result['setup_s']:.1f} s)",
            flush=True,
        )

        lists: dict[str, Any] = {}
        for path in (
            "/api/v1/alerts",
            "/api/v1/alerts?limit=1000",
            "/api/v1/devices",
            "/api/v1/devices?limit=1000",
        ):
            q: Any = ctx.Queue()
            p = ctx.Process(target=loadgen, args=(base + path, args.conns, args.duration, q))
            p.start()
            res = await asyncio.to_thread(q.get, True, args.duration + 120)
            await asyncio.to_thread(p.join, 30)
            lists[path] = res
            print(
                f"  GET {path}: {res['rps']:.0f} req/s, p50 {res['p50_ms']:.1f} ms, "
                f"p99 {res['p99_ms']:.1f} ms, {res['bytes'] / 1024:.0f} KiB, "
                f"{res['errors']} errors",
                flush=True,
            )
        result["lists"] = lists

        steps = []
        for k in args.clients:
            step = await stream_step(svc, mq, base, k, args)
            steps.append(step)
            print(
                f"  stream K={k}: {'pass' if step['pass'] else 'FAIL'}; worst client "
                f"{step['min_share'] * 100:.1f}% of {step['sent']} fixes "
                f"(sent at {step['fix_rate']:.0f}/s), p99 {step['worst_p99_s'] * 1000:.0f} ms, "
                f"{step['resets']} resets; CPU service {step['service_cpu']:.2f}, "
                f"clients {step['clients_cpu']:.2f} cores",
                flush=True,
            )
            if not step["pass"]:
                break
        result["stream"] = steps
        passed = [s["clients"] for s in steps if s["pass"]]
        result["max_stream_clients"] = max(passed) if passed else 0
    influx.drop_db(db)
    return result


async def stream_step(
    svc: Service, mq: Mosquitto, base: str, k: int, args: argparse.Namespace
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    url = base.replace("http", "ws", 1) + "/api/v1/stream?types=position"
    procs = min(args.client_procs, k)
    shares = [k // procs + (1 if j < k % procs else 0) for j in range(procs)]
    ready: Any = ctx.Queue()
    out: Any = ctx.Queue()
    stop = ctx.Event()
    clients = [ctx.Process(target=stream_clients, args=(url, n, ready, stop, out)) for n in shares]
    for c in clients:
        c.start()
    for _ in clients:
        await asyncio.to_thread(ready.get, True, 120)
    cpu0, wall0 = time.process_time(), time.monotonic()
    pq: Any = ctx.Queue()
    pub = ctx.Process(
        target=fix_publisher, args=(mq.port, args.devices, args.fix_rate, args.stream_seconds, pq)
    )
    pub.start()
    published = await asyncio.to_thread(pq.get, True, args.stream_seconds + 120)
    await asyncio.to_thread(pub.join, 30)
    # Let what is in flight arrive (a p99 over 1 s fails anyway).
    await asyncio.sleep(2.0)
    service_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    stop.set()
    per_client: list[dict[str, Any]] = []
    client_cpu = 0.0
    for _ in clients:
        got = await asyncio.to_thread(out.get, True, 120)
        per_client += got["clients"]
        client_cpu += got["cpu"]
    for c in clients:
        await asyncio.to_thread(c.join, 30)
    sent = published["sent"]
    shares_got = [c["received"] / sent for c in per_client]
    p99s = [c["p99_s"] if c["p99_s"] is not None else float("inf") for c in per_client]
    ok = min(shares_got) >= PASS_SHARE and max(p99s) < PASS_P99_S
    return {
        "clients": k,
        "sent": sent,
        "fix_rate": published["rate"],
        "min_share": min(shares_got),
        "worst_p99_s": max(p99s),
        "median_p50_s": statistics.median(c["p50_s"] or 0.0 for c in per_client),
        "resets": sum(c["resets"] for c in per_client),
        "service_cpu": service_cpu,
        "clients_cpu": client_cpu,
        "pass": ok,
    }


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--alerts", type=int, default=1_000)
    ap.add_argument("--conns", type=int, default=16, help="load generator connections")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per list URL")
    ap.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 5, 10, 25, 50, 100, 200, 400],
        help="stream client counts to try, in order",
    )
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--fix-rate", type=int, default=1000, help="fixes a second on the stream")
    ap.add_argument("--stream-seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    rounds = []
    with (
        tempfile.TemporaryDirectory(prefix="cw-bench-api-") as tmp,
        Mosquitto(Path(tmp) / "mosquitto") as mq,
        Influx(Path(tmp) / "influx") as influx,
    ):
        for r in range(args.rounds):
            print(f"round {r + 1}:", flush=True)
            work = Path(tmp) / f"round-{r}"
            rounds.append(asyncio.run(one_round(args, mq, influx, work)))
    paths = list(rounds[0]["lists"])
    summary: dict[str, Any] = {
        "devices": args.devices,
        "alerts": args.alerts,
        "conns": args.conns,
        "duration_s": args.duration,
        "fix_rate": args.fix_rate,
        "lists": {
            p: {
                key: statistics.median(r["lists"][p][key] for r in rounds)
                for key in ("rps", "p50_ms", "p99_ms", "bytes")
            }
            for p in paths
        },
        "max_stream_clients_median": statistics.median(r["max_stream_clients"] for r in rounds),
        "max_stream_clients": [r["max_stream_clients"] for r in rounds],
        "rounds": rounds,
    }
    report(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
