"""Alert push delay: from a rule's event to the MQTT push on the receiver's topic.

The alerting layer runs in this process as in the service (SQLite store in a
temporary folder, the outbox, the MQTT push to a real Mosquitto) and is fed
alert events the way the rules feed it: batches every 10 ms, at ``--rate``
new alerts a second, each for another officer and one of ``--leads`` patrol
leads. A subscriber in another process takes every push on
``citywatch/321200/alerts/+`` and measures the delay from the emit (carried in the
event's values) to its arrival. Reported: p50, p99 and max delay, and pushes
received against alerts emitted (each must arrive exactly once).

    python bench/alerting.py --rate 1000 --seconds 20 --rounds 3
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import idle_event, parser, report  # noqa: E402
from citywatch.alerting.config import AlertingConfig  # noqa: E402
from citywatch.alerting.notifiers.mqtt import MqttPush  # noqa: E402
from citywatch.clock import SystemClock  # noqa: E402
from citywatch.config import parse_mqtt_url  # noqa: E402
from citywatch.models import AlertEvent  # noqa: E402
from citywatch.topics import ALERT, DEFAULT_ROOT  # noqa: E402
from tests.alerting.standalone import standalone  # noqa: E402
from tests.services import Mosquitto  # noqa: E402

CITY = "321200"


def subscriber(port: int, expected: int, ready: Any, out: Any, timeout: float) -> None:
    """Collect (receive time - emit time) of every push, until ``expected`` or ``timeout``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    delays: list[float] = []
    ids: set[str] = set()
    dupes = 0

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal dupes
        now = time.time()
        doc = orjson.loads(msg.payload)
        if doc["id"] in ids:
            dupes += 1
            return
        ids.add(doc["id"])
        delays.append(now - doc["details"]["values"]["emitted"])

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")
    c.on_message = on_message
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe(ALERT.filter(DEFAULT_ROOT, city=CITY), 1)
    deadline = time.monotonic() + timeout
    while len(delays) < expected and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    out.put({"delays": delays, "dupes": dupes})


def event(i: int, lead: str, now: float) -> AlertEvent:
    return idle_event(f"off-{i:06d}", f"dev-{i:06d}", lead, "321202001001001", now, emitted=now)


async def feed(
    mq: Mosquitto, workdir: Path, rate: int, seconds: float, leads: int
) -> dict[str, Any]:
    cfg = AlertingConfig()
    push = MqttPush(parse_mqtt_url(mq.url), f"bench-push-{uuid.uuid4().hex[:6]}", DEFAULT_ROOT)
    total = int(rate * seconds)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=subscriber, args=(mq.port, total, ready, out, seconds + 60))
    sub.start()
    ready.wait(20)
    async with push, aiohttp.ClientSession() as session:
        await push.wait_connected(10)
        alerting = standalone(cfg, workdir, push, session, SystemClock())
        async with alerting:
            per_tick = max(1, rate // 100)
            t0 = time.monotonic()
            emitted, lag = 0, 0.0
            while emitted < total:
                target = t0 + emitted / rate
                wait = target - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    lag = max(lag, -wait)
                now = time.time()
                batch = [
                    event(emitted + k, f"lead-{(emitted + k) % leads:03d}", now)
                    for k in range(min(per_tick, total - emitted))
                ]
                await alerting.emit(batch)
                emitted += len(batch)
            feed_s = time.monotonic() - t0
            result = await asyncio.to_thread(out.get, True, seconds + 90)
    sub.join(10)
    d = np.asarray(result["delays"])
    return {
        "emitted": total,
        "received": len(d),
        "duplicates": result["dupes"],
        "feed_rate": total / feed_s,
        "max_feed_lag_s": lag,
        "p50_ms": float(np.percentile(d, 50) * 1000) if len(d) else None,
        "p99_ms": float(np.percentile(d, 99) * 1000) if len(d) else None,
        "max_ms": float(d.max() * 1000) if len(d) else None,
    }


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--rate", type=int, default=1000, help="new alerts a second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--leads", type=int, default=100, help="distinct receivers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the first round here")
    args = ap.parse_args()
    rounds = []
    with (
        tempfile.TemporaryDirectory(prefix="cw-bench-alerting-") as tmp,
        Mosquitto(Path(tmp) / "mosquitto") as mq,
    ):
        if True:
            for r in range(args.rounds):
                work = Path(tmp) / f"round-{r}"
                work.mkdir()
                coro = feed(mq, work, args.rate, args.seconds, args.leads)
                if args.profile and r == 0:
                    import cProfile

                    with cProfile.Profile() as prof:
                        res = asyncio.run(coro)
                    prof.dump_stats(args.profile)
                else:
                    res = asyncio.run(coro)
                rounds.append(res)
                print(
                    f"round {r + 1}: {res['received']}/{res['emitted']} pushes, "
                    f"{res['duplicates']} duplicates, fed at {res['feed_rate']:.0f}/s, "
                    f"delay p50 {res['p50_ms']:.1f} ms p99 {res['p99_ms']:.1f} ms "
                    f"max {res['max_ms']:.1f} ms",
                    flush=True,
                )
    summary = {
        "rate": args.rate,
        "seconds": args.seconds,
        "leads": args.leads,
        "p50_ms_median": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in rounds),
        "lost": sum(r["emitted"] - r["received"] for r in rounds),
        "duplicates": sum(r["duplicates"] for r in rounds),
        "rounds": rounds,
    }
    report(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
