"""Ingest throughput: GPS messages per second from broker to InfluxDB, at-least-once.

Each round queues the same backlog of GPS fixes from N devices in the broker
for a persistent session, then measures how fast it drains:

* ``bare``: a bare paho-mqtt subscriber (auto-ack, no parsing, no writes):
  the physical limit of this broker, this client library and this machine;
* ``collector``: ``citywatch run --only collector``, until InfluxDB holds every fix;
* ``service``: ``citywatch run`` (every component), likewise.

Rates are the median over rounds; ratios are to the bare rate of the same round.
Real Mosquitto and InfluxDB are started on free ports in a temporary folder.

    python bench/ingest.py --devices 2000 --messages 100000 --rounds 3
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import parser  # noqa: E402
from citywatch.collectors.topics import Router  # noqa: E402
from citywatch.topics import DEFAULT_ROOT, gps_topic  # noqa: E402
from tests.helpers import ServiceProcess  # noqa: E402
from tests.services import Influx, Mosquitto  # noqa: E402

# The collector's own subscriptions, with the default roots.
SUBSCRIPTIONS = [(f, 1) for f in Router().subscriptions()]


def make_payloads(devices: int, messages: int, now: float) -> list[tuple[str, bytes]]:
    """Realistic fixes: RFC 3339 times, accuracy, speed, heading, battery, sequence."""
    out: list[tuple[str, bytes]] = []
    per_device = max(1, messages // devices)
    for k in range(per_device):
        for d in range(devices):
            if len(out) >= messages:
                break
            ts = now - (per_device - k) * 1.0
            t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{k % 1000:03d}Z"
            body = {
                "ts": t,
                "lat": 32.45 + (d % 100) * 1e-4 + k * 1e-6,
                "lon": 119.92 + (d // 100) * 1e-4,
                "acc": 5.0 + (k % 7),
                "speed": 1.2,
                "heading": float(k % 360),
                "battery": 80.0,
                "seq": k,
            }
            topic = gps_topic(DEFAULT_ROOT, "321200", f"dev-{d:05d}")
            out.append((topic, orjson.dumps(body)))
    return out


def clear_session(port: int, client_id: str) -> None:
    """Remove ``client_id``'s persistent session, so it queues nothing more."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.disconnect()


def register_session(port: int, client_id: str) -> None:
    """Create a fresh persistent session so the backlog queues for ``client_id``."""
    clear_session(port, client_id)
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe(SUBSCRIPTIONS)
    if not done.wait(10):
        raise RuntimeError("subscribe timed out")
    c.disconnect()
    c.loop_stop()


def publish_packet(topic: str, body: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 1 with packet id ``mid``."""
    t = topic.encode()
    var = len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + body
    n, rl = len(var), bytearray()
    while True:
        byte, n = n % 128, n // 128
        rl.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x32]) + bytes(rl) + var


def publish_backlog(port: int, payloads: list[tuple[str, bytes]], window: int = 2000) -> float:
    """Queue every payload in the broker at QoS 1, over a raw MQTT 3.1.1 connection.

    A paho publisher tops out at a few thousand messages a second here, which would
    make filling the backlog the slowest part of the benchmark; this one streams
    PUBLISH packets and counts PUBACKs, keeping ``window`` in flight. Returns seconds.
    """
    cid = f"bench-pub-{os.getpid()}".encode()
    connect_var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(bytes([0x10, len(connect_var)]) + connect_var)
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("broker refused the benchmark publisher")
        sent = acked = 0
        pending = b""
        total = len(payloads)
        while acked < total:
            if sent < total and sent - acked < window:
                chunk = payloads[sent : min(total, acked + window)]
                sock.sendall(
                    b"".join(
                        publish_packet(t, b, (sent + i) % 65535 + 1)
                        for i, (t, b) in enumerate(chunk)
                    )
                )
                sent += len(chunk)
            data = pending + sock.recv(65536)
            whole = len(data) // 4 * 4  # PUBACKs are 4 bytes each
            acked += whole // 4
            pending = data[whole:]
        sock.sendall(b"\xe0\x00")
    return time.perf_counter() - t0


def bare_drain(port: int, client_id: str, n: int) -> float:
    """Run in a child process: drain ``n`` messages with a bare subscriber; print the rate."""
    code = f"""
import time, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
n = {n}; count = 0; t0 = None
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id={client_id!r}, clean_session=False)
def on_message(client, userdata, msg):
    global count, t0
    if t0 is None: t0 = time.perf_counter()
    count += 1
    if count >= n:
        print(n / (time.perf_counter() - t0)); client.disconnect()
c.on_message = on_message
c.connect("127.0.0.1", {port})
c.loop_forever()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip())


def service_drain(
    mq: Mosquitto, influx: Influx, db: str, n: int, only: str | None, workdir: Path
) -> tuple[float, int, float]:
    """Run the service until it has written ``n`` fixes; returns (rate, in InfluxDB, peak MiB)."""
    svc = ServiceProcess(mq, influx, db, workdir / db, ["--only", only] if only else [])
    (workdir / db).mkdir(exist_ok=True)
    with svc:
        t_first = t_last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            received = svc.metric("citywatch_ingest_received_total")
            written = svc.metric("citywatch_write_points_total", 'outcome="written"')
            now = time.perf_counter()
            if t_first is None and received > 0:
                t_first = now
            if written >= n:
                t_last = now
                break
            time.sleep(0.05)
        if t_first is None or t_last is None:
            raise RuntimeError("service did not drain the backlog in time")
        assert svc.proc is not None
        with open(f"/proc/{svc.proc.pid}/status") as fh:
            hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    stored = influx.count("gps", db)
    return n / (t_last - t_first), stored, hwm / 1024


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="bare,collector,service")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {m: [] for m in modes if m != "bare"}
    peaks: dict[str, list[float]] = {m: [] for m in modes if m != "bare"}
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "mq") as mq, Influx(work / "influx") as influx:
            for rnd in range(args.rounds):
                bare_rate = None
                for mode in modes:
                    payloads = make_payloads(args.devices, args.messages, time.time())
                    n = len(payloads)
                    client_id = "bench-bare" if mode == "bare" else "citywatch-collector"
                    register_session(mq.port, client_id)
                    pub_s = publish_backlog(mq.port, payloads)
                    if mode == "bare":
                        rate = bare_drain(mq.port, client_id, n)
                        bare_rate = rate
                        extra = ""
                    else:
                        db = f"bench_{mode}_{rnd}"
                        influx.create_db(db)
                        rate, stored, peak = service_drain(
                            mq, influx, db, n, "collector" if mode == "collector" else None, work
                        )
                        if stored != n:
                            raise SystemExit(f"LOSS: {mode} stored {stored} of {n} fixes")
                        peaks[mode].append(peak)
                        extra = f"  stored {stored}/{n}  peak RSS {peak:.0f} MiB"
                        if bare_rate:
                            ratios[mode].append(rate / bare_rate)
                            extra += f"  ratio {rate / bare_rate:.2f}"
                    clear_session(mq.port, client_id)
                    results[mode].append(rate)
                    print(
                        f"round {rnd + 1} {mode:9s} {rate:9.0f} msg/s"
                        f"  (backlog published in {pub_s:.1f}s){extra}",
                        flush=True,
                    )
    print()
    print(f"{args.devices} devices, {args.messages} messages, {args.rounds} rounds (medians)")
    summary: dict[str, object] = {
        "devices": args.devices,
        "messages": args.messages,
        "rounds": args.rounds,
    }
    for mode in modes:
        med = statistics.median(results[mode])
        line = f"  {mode:9s} {med:9.0f} msg/s"
        if ratios.get(mode):
            line += f"  ratio to bare {statistics.median(ratios[mode]):.2f}"
            line += f"  peak RSS {statistics.median(peaks[mode]):.0f} MiB"
        print(line)
        summary[mode] = {
            "rates": results[mode],
            "median": med,
            "ratio_median": statistics.median(ratios[mode]) if ratios.get(mode) else None,
            "peak_rss_mib": statistics.median(peaks[mode]) if peaks.get(mode) else None,
        }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
