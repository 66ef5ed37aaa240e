"""Patrol supervision at scale: 100,000 handhelds at one fix every 10 s.

In-process: the benchmark drives :class:`rules.patrols.rule.PatrolRule` directly, as the
collector does (``await rule.write(records)``), inside one asyncio loop with the rule's own
ticker and flusher tasks running, a SQLite store in a temporary folder, the wall clock
(``SystemClock``) and a stand-in ``AlertSink`` that records when each batch of alert
events is emitted. No broker, no InfluxDB.

Each round:

* builds a district of 2 x 2-cell blocks (``make_district``; each officer gets the 4
  cells of one block, blocks shared by many officers) and starts a shift for every officer;
* feeds fixes for all of them at ``--rate`` fixes/s (default 10,000 = 100,000 devices every
  10 s) in batches of ``--batch`` (1,000 every 100 ms), for ``--duration`` s of fix time.
  Fixes carry their own ``ts`` (the scheduled instant) and ``received_at`` (the wall time
  when the batch is handed to ``write``). Thresholds are short so conditions become true
  during the run: idle after ``--idle-window`` s within 25 m, out of grid after
  ``--out-after`` s. About 5% of officers stand still (idle), about 2% walk out of their
  block; the rest walk a 60 m circle inside it at 1.2 m/s;
* measures: memory per device (RSS after the feed minus RSS before the shifts, over the
  devices; and the fleet's columns per slot plus a deep ``sys.getsizeof`` of one officer's
  Python objects as a cross-check);
  one full evaluation pass (``PatrolRule.full_pass``: every rule over every officer,
  vectorised, median of ``--passes``; idle results are kept per track until it changes, so
  a cold pass, every track's idle check redone as after a restart, is timed too); the delay
  from the fix that made a condition true (its ``received_at``) to the emit of its alert
  event, p50/p99/max, also read back from ``citywatch_patrol_alert_delay_seconds``.

    python bench/patrols.py --devices 100000 --rounds 1 --json bench/results/patrols.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import parser  # noqa: E402
from citywatch.clock import SystemClock  # noqa: E402
from citywatch.geo import offset_m  # noqa: E402
from citywatch.models import AlertEvent, Fix, ShiftEvent  # noqa: E402
from citywatch.rules.patrols.config import IdleConfig, OutOfGridConfig, PatrolsConfig  # noqa: E402
from citywatch.rules.patrols.grids import Grids  # noqa: E402
from citywatch.rules.patrols.metrics import PatrolMetrics  # noqa: E402
from citywatch.rules.patrols.rule import PatrolRule  # noqa: E402
from citywatch.simulate.grid import make_district  # noqa: E402

CITY = "321200"
CELLS = 10  # cells per community side: 5 x 5 blocks of 2 x 2 cells
WALK_R = 60.0  # metres: walkers circle this far from their block's centre
WALK_MPS = 1.2
AWAY_M = 300.0  # out-of-grid walkers move to a circle this far east of their block
TARGET_PASS_MS = 50.0
TARGET_BYTES = 2048.0
TARGET_P99_S = 1.0


class RecordingSink:
    """A stand-in AlertSink: the delay of each firing event from its batch's ``received_at``."""

    def __init__(self) -> None:
        self.current: float | None = None
        self.delays: list[float] = []
        self.by_rule: dict[str, int] = {}
        self.unattributed = 0

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        now = time.time()
        for e in events:
            if e.status != "firing":
                continue
            self.by_rule[e.rule] = self.by_rule.get(e.rule, 0) + 1
            if self.current is not None and e.rule in ("patrol_idle", "patrol_out_of_grid"):
                self.delays.append(now - self.current)
            else:
                self.unattributed += 1


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))


def hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """``sys.getsizeof`` over ``obj`` and what it holds (containers, dataclass/slots fields)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    elif hasattr(type(obj), "__slots__") and not isinstance(obj, str | int | float):
        size += sum(deep_size(getattr(obj, n, None), seen) for n in type(obj).__slots__)
    return size


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def hist_quantile(registry: CollectorRegistry, name: str, q: float) -> tuple[int, float]:
    """(count, upper bound of the bucket holding quantile ``q``) of a histogram."""
    buckets: list[tuple[float, float]] = []
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == f"{name}_bucket":
                buckets.append((float(s.labels["le"]), s.value))
    buckets.sort()
    total = int(buckets[-1][1]) if buckets else 0
    for le, cum in buckets:
        if total and cum >= q * total:
            return total, le
    return total, math.nan


def district(streets: int, communities: int) -> tuple[Grids, list[tuple[tuple[str, ...], Any]]]:
    """The grids, and each block's (4 cell codes, centre (lon, lat))."""
    fc = make_district(streets=streets, communities=communities, cells=CELLS)
    grids = Grids.from_geojson(fc)
    blocks = []
    for s in range(streets):
        for m in range(communities):
            community = f"321202{s + 1:03d}{m + 1:03d}"
            for bi in range(CELLS // 2):
                for bj in range(CELLS // 2):
                    ks = [(2 * bi + dr) * CELLS + 2 * bj + dc for dr in (0, 1) for dc in (0, 1)]
                    codes = tuple(f"{community}{k + 1:03d}" for k in ks)
                    pts = [grids.centroid(c) for c in codes]
                    centre = (sum(p[0] for p in pts) / 4, sum(p[1] for p in pts) / 4)
                    blocks.append((codes, centre))
    return grids, blocks


class Fleet:
    """Who does what: positions of every officer's fix ``k`` (one every 10 s)."""

    def __init__(self, devices: int, blocks: list[tuple[tuple[str, ...], Any]], seed: int) -> None:
        rng = random.Random(seed)
        self.devices = devices
        self.blocks = blocks
        self.kind = [rng.choices("wio", weights=(93, 5, 2))[0] for _ in range(devices)]
        self.phase = [rng.uniform(0, 2 * math.pi) for _ in range(devices)]
        # Metres per degree at the district's latitude, for cheap offsets.
        lon0, lat0 = blocks[0][1]
        x1, y1 = offset_m(lon0, lat0, 1.0, 1.0)
        self.dlon, self.dlat = x1 - lon0, y1 - lat0

    def block(self, i: int) -> tuple[tuple[str, ...], Any]:
        return self.blocks[i % len(self.blocks)]

    def position(self, i: int, k: int, rng: random.Random) -> tuple[float, float]:
        lon, lat = self.block(i)[1]
        kind = self.kind[i]
        if kind == "i":  # standing still: a few metres of GPS drift
            return lon + rng.gauss(0, 2) * self.dlon, lat + rng.gauss(0, 2) * self.dlat
        east = AWAY_M if kind == "o" and k >= 2 else 0.0
        a = self.phase[i] + k * 10.0 * WALK_MPS / WALK_R
        return (
            lon + (east + WALK_R * math.cos(a)) * self.dlon,
            lat + WALK_R * math.sin(a) * self.dlat,
        )


def full_pass(rule: PatrolRule, passes: int) -> list[float]:
    """Seconds for one evaluation of every rule over every officer, ``passes`` times."""
    out = []
    for _ in range(passes):
        now = time.time()
        t0 = time.perf_counter()
        rule.full_pass(now)
        out.append(time.perf_counter() - t0)
    return out


def per_officer_size(rule: PatrolRule) -> dict[str, float]:
    """One officer's share of the rule's structures (bytes).

    The fleet's columns per slot in use; a second officer's deep size of what is theirs
    alone (shared grids tuples and interned strings not counted); dict slots and keys.
    """
    keys = list(itertools.islice(rule.officers, 2))
    a, b = (rule.officers[k] for k in keys)
    seen: set[int] = {id(rule.grids), id(a.grids), id(b.grids)}
    deep_size(keys[1], seen)
    deep_size(b, seen)
    officer = deep_size(a, seen) + deep_size(keys[0], seen)
    n = len(rule.officers)
    columns = rule.fleet.nbytes / rule.fleet.capacity
    index = (
        sys.getsizeof(rule.officers) + sys.getsizeof(rule.devices) + sys.getsizeof(rule.by_slot)
    ) / n + deep_size((a.city, a.device))
    return {
        "columns": columns,
        "ring_entries": float(rule.fleet.ring_t.shape[0]),
        "officer": officer,
        "indexes": index,
        "total": columns + officer + index,
    }


async def run_round(args: argparse.Namespace, rnd: int) -> dict[str, Any]:
    grids, blocks = district(args.streets, args.communities)
    fleet = Fleet(args.devices, blocks, seed=rnd)
    cfg = PatrolsConfig(
        idle=IdleConfig(window=args.idle_window, radius=25.0),
        out_of_grid=OutOfGridConfig(after=args.out_after),
    )
    registry = CollectorRegistry()
    metrics = PatrolMetrics(registry)
    sink = RecordingSink()
    rng = random.Random(1000 + rnd)
    res: dict[str, Any] = {"round": rnd + 1, "assignments": len(blocks)}
    with tempfile.TemporaryDirectory(prefix="cw-bench-patrols-") as tmp:
        rule = PatrolRule(
            cfg, grids, Path(tmp) / "patrols.sqlite", sink, None, metrics, SystemClock()
        )
        async with rule:
            gc.collect()
            rss0 = rss_bytes()
            t = time.time()
            shifts = [
                ShiftEvent(
                    CITY,
                    f"officer-{i:06d}",
                    t,
                    "start",
                    t,
                    device=f"dev-{i:06d}",
                    grids=fleet.block(i)[0],
                    lead=f"lead-{i // 20:05d}",
                    role="inspector",
                )
                for i in range(args.devices)
            ]
            t0 = time.perf_counter()
            for j in range(0, len(shifts), 10_000):
                await rule.write(shifts[j : j + 10_000])
            res["shift_s"] = time.perf_counter() - t0
            del shifts
            # Feed: fix k of officer i is due at start + k * 10 + offset of its batch.
            per_period = args.rate * 10.0
            n_fix = math.ceil(args.duration / 10.0)
            start = time.time() + 0.5
            lags: list[float] = []
            write_s: list[float] = []
            sent = 0
            batches = math.ceil(args.devices / args.batch)
            for k in range(n_fix):
                for b in range(batches):
                    lo = b * args.batch
                    due = start + k * 10.0 + lo / per_period * 10.0
                    pause = due - time.time()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    fixes = []
                    for i in range(lo, min(args.devices, lo + args.batch)):
                        lon, lat = fleet.position(i, k, rng)
                        fixes.append((f"dev-{i:06d}", lon, lat))
                    received = time.time()
                    lags.append(received - due)
                    batch = [
                        Fix(CITY, d, due, lat, lon, received, acc=8.0, speed=WALK_MPS)
                        for d, lon, lat in fixes
                    ]
                    sink.current = received
                    w0 = time.perf_counter()
                    await rule.write(batch)
                    write_s.append(time.perf_counter() - w0)
                    sink.current = None
                    sent += len(batch)
            feed_s = time.time() - start
            gc.collect()
            rss1 = rss_bytes()
            res.update(
                fixes=sent,
                feed_s=feed_s,
                rate=sent / feed_s,
                lag_p99_s=percentile(lags, 0.99),
                lag_max_s=max(lags),
                write_p50_ms=1000 * percentile(write_s, 0.5),
                write_p99_ms=1000 * percentile(write_s, 0.99),
                write_max_ms=1000 * max(write_s),
                rss_before_mib=rss0 / 2**20,
                rss_after_mib=rss1 / 2**20,
                bytes_per_device=(rss1 - rss0) / args.devices,
                deep=per_officer_size(rule),
            )
            passes = full_pass(rule, args.passes)
            res["pass_ms"] = [1000 * s for s in passes]
            res["pass_median_ms"] = 1000 * statistics.median(passes)
            # As after a restart or a change of thresholds: every track's idle check redone.
            cold = []
            for _ in range(args.passes):
                rule.fleet.idle_stale[rule.fleet.live()] = True
                cold += full_pass(rule, 1)
            res["cold_pass_median_ms"] = 1000 * statistics.median(cold)
            d = sink.delays
            res.update(
                alerts=dict(sink.by_rule),
                unattributed=sink.unattributed,
                expected={
                    "patrol_idle": fleet.kind.count("i"),
                    "patrol_out_of_grid": fleet.kind.count("o"),
                },
                delay_p50_s=percentile(d, 0.5),
                delay_p99_s=percentile(d, 0.99),
                delay_max_s=max(d) if d else math.nan,
            )
            name = "citywatch_patrol_alert_delay_seconds"
            res["hist_count"], res["hist_p50_le"] = hist_quantile(registry, name, 0.5)
            _, res["hist_p99_le"] = hist_quantile(registry, name, 0.99)
            t0 = time.perf_counter()
        res["exit_s"] = time.perf_counter() - t0
    res["peak_rss_mib"] = hwm_bytes() / 2**20
    return res


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=10_000.0, help="fixes per second")
    ap.add_argument("--batch", type=int, default=1000, help="fixes per write")
    ap.add_argument("--duration", type=float, default=90.0, help="seconds of fixes")
    ap.add_argument("--idle-window", type=float, default=60.0)
    ap.add_argument("--out-after", type=float, default=30.0)
    ap.add_argument("--streets", type=int, default=5)
    ap.add_argument("--communities", type=int, default=8)
    ap.add_argument("--passes", type=int, default=5, help="full evaluation passes per round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    wall0 = time.perf_counter()
    rounds = []
    for rnd in range(args.rounds):
        r = asyncio.run(run_round(args, rnd))
        rounds.append(r)
        print(
            f"round {rnd + 1}: {r['fixes']} fixes in {r['feed_s']:.1f}s ({r['rate']:.0f}/s,"
            f" lag p99 {r['lag_p99_s'] * 1000:.0f} ms, max {r['lag_max_s'] * 1000:.0f} ms)"
            f"  write p50/p99/max {r['write_p50_ms']:.1f}/{r['write_p99_ms']:.1f}/"
            f"{r['write_max_ms']:.1f} ms"
            f"  pass {r['pass_median_ms']:.1f} ms  {r['bytes_per_device']:.0f} B/device"
            f"  delay p50/p99/max {r['delay_p50_s'] * 1000:.0f}/{r['delay_p99_s'] * 1000:.0f}/"
            f"{r['delay_max_s'] * 1000:.0f} ms  alerts {r['alerts']} (expected {r['expected']})",
            flush=True,
        )
    wall = time.perf_counter() - wall0

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    first = rounds[0]
    pass_ms, per_dev = med("pass_median_ms"), first["bytes_per_device"]
    p50, p99, dmax = med("delay_p50_s"), med("delay_p99_s"), med("delay_max_s")
    deep = first["deep"]
    print()
    print(
        f"{args.devices} devices, {args.rate:.0f} fixes/s in batches of {args.batch},"
        f" {args.duration:.0f}s of fixes, {first['assignments']} distinct assignments,"
        f" {args.rounds} round(s) (medians); wall {wall:.0f}s"
    )
    print(
        f"  full evaluation pass  {pass_ms:8.1f} ms        target < {TARGET_PASS_MS:.0f} ms"
        f"   {verdict(pass_ms < TARGET_PASS_MS)}"
    )
    print(
        f"    cold pass (every track's idle check redone, as after a restart):"
        f" {med('cold_pass_median_ms'):.1f} ms"
    )
    print(
        f"  memory per device     {per_dev:8.0f} B         target < {TARGET_BYTES:.0f} B"
        f"   {verdict(per_dev < TARGET_BYTES)}"
        f"   (RSS {first['rss_before_mib']:.0f} -> {first['rss_after_mib']:.0f} MiB,"
        f" peak {first['peak_rss_mib']:.0f} MiB, first round)"
    )
    print(
        f"    by size: fleet columns {deep['columns']:.0f} B/slot (ring of"
        f" {deep['ring_entries']:.0f}) + officer {deep['officer']:.0f}"
        f" + indexes ~{deep['indexes']:.0f} = {deep['total']:.0f} B"
    )
    print(
        f"  alert delay p50/p99   {p50 * 1000:5.0f} / {p99 * 1000:.0f} ms   target p99 < "
        f"{TARGET_P99_S:.0f} s  {verdict(p99 < TARGET_P99_S)}   (max {dmax * 1000:.0f} ms;"
        f" histogram: {first['hist_count']} observed, p50 <= {first['hist_p50_le']} s,"
        f" p99 <= {first['hist_p99_le']} s)"
    )
    print(
        f"  ingest: {med('rate'):.0f} fixes/s achieved, write p50/p99/max "
        f"{med('write_p50_ms'):.1f}/{med('write_p99_ms'):.1f}/{med('write_max_ms'):.1f} ms per"
        f" batch; start of shifts {first['shift_s']:.1f}s, shutdown {first['exit_s']:.1f}s"
    )
    if args.json:
        summary = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "rounds": rounds,
            "pass_median_ms": pass_ms,
            "cold_pass_median_ms": med("cold_pass_median_ms"),
            "bytes_per_device": per_dev,
            "delay_p50_s": p50,
            "delay_p99_s": p99,
            "delay_max_s": dmax,
            "wall_s": wall,
            "python": platform.python_version(),
        }
        args.json.write_text(json.dumps(summary, indent=2))
    ok = pass_ms < TARGET_PASS_MS and per_dev < TARGET_BYTES and p99 < TARGET_P99_S
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
