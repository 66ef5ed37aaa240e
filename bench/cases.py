"""Case supervision at scale: 100,000 open cases with timers, restored and firing under load.

The spec: "100,000 open cases with timers; report the memory, the time to restore them at
start-up, and the lateness of timer firings (p50/p99) under an ingest load of 1,000 case
events/s. Targets: p99 lateness under 1 s, restore under 10 s."

The case rule is driven in-process, as a sink: ``CaseRule.write(records)`` is exactly what
the collector calls with each decoded batch, so no broker is needed. The rule is built as the
service builds it (``rules.registry.case_rule``): the real SQLite store in a temporary data
folder, a fresh Prometheus registry, the wall clock, the KPI reporter (without an InfluxDB
writer), and stand-ins for alerting (records each alert event's instant and the wall time of
its emit) and for the dead-letter topic (counts). Each round has these phases:

* ``load`` (a child process): feed the cases' events in batches of ``--batch`` until
  ``--cases`` cases are open: 70% only ``reported`` (the filing clock runs), 20% also
  ``filed`` (dispatch), 10% also ``dispatched`` (acceptance and disposal). Time, events/s,
  peak RSS (``VmHWM``), then the rule is closed (``__aexit__``).
* ``restore`` (a second, fresh child process, as at a restart): a new CaseRule on the same
  data folder; ``__aenter__`` is timed (and ``citywatch_cases_restore_seconds`` read). The
  memory of the open cases is RSS after the restore minus RSS before it.
* ``timers`` (same process, right after): every case's next light falls in a window of
  ``--window`` seconds, instants spread uniformly in random order: for 80% of cases it is
  the yellow light (red comes 0.2 x limit later, after the window), for 20% the red one
  (their yellow was raised during the load). Meanwhile a paced producer feeds ``--rate``
  case events/s (one batch every 100 ms on a fixed schedule, sent at once when behind; a
  third new reports, the rest the next step of a random open case). Lateness of a firing =
  wall time of its emit minus its instant, over every firing whose instant lies in the
  window; ``citywatch_case_timer_lateness_seconds`` is read too (it is observed when the
  timer pops, a little before the emit, and only to its buckets). After the window the
  script waits until no timer due inside it is left, so slow firings are counted, not
  dropped. Also reported: the ingest rate achieved, write latency, process CPU, full GC
  passes in the window, one ``/metrics`` scrape and one KPI recomputation (every 60 s in
  the service; none falls in the window), each with every case in memory.
* ``recompute`` (round 1 only, a third child process): start-up after the step limits
  changed, which replays and saves every open case; timed to the end of ``__aenter__`` and
  until the timers due at start-up have fired.

``--fire-share`` below 1 puts only that share of the cases' lights in the window (by
default every case's: some 3,000 firings/s, a stress far beyond a city's real rate); the
others get a category whose limits are 8 hours, so they stay open with a timer but fire
long after the window.

Instants are absolute, so they are planned before the load: the window opens ``lead``
seconds later, estimated from a small calibration run (then from the previous rounds) so
that the rule is up before it; instants that fall due before it are reported apart. The
limit of the filing, dispatch and acceptance steps is at least ``5 x (lead + window)``
(600 s by default), which puts every report in the past and each case's other light
outside the window.

``--calendars natural,working``: the natural calendar is the primary figure (``--rounds``).
The working calendar (``--working-rounds``) is the default ``CalendarConfig``: Asia/Shanghai
work hours and China's holidays. Its lights change only inside work hours, so when the wall
clock is outside them that run uses the wall clock moved by a constant offset to the next
stretch of work hours long enough for the round (printed); the rule cannot tell.

    python bench/cases.py --cases 100000 --rate 1000 --window 30 --rounds 3 --json out.json

With the defaults (3 natural rounds, 1 working round) it takes about 7 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from bench.common import parser  # noqa: E402
from citywatch.clock import Clock, SystemClock  # noqa: E402
from citywatch.models import AlertEvent, CaseEvent, Rejected  # noqa: E402
from citywatch.rules.calendar import CalendarConfig, make_calendar  # noqa: E402
from citywatch.rules.cases.config import CasesConfig, Limits, StageLimit  # noqa: E402
from citywatch.rules.cases.metrics import CaseMetrics  # noqa: E402
from citywatch.rules.cases.rule import CaseRule  # noqa: E402
from citywatch.rules.registry import RuleContext, case_rule  # noqa: E402

CITY = "321200"
QUIET = "0199"  # the category of cases whose lights do not fall in the window
QUIET_LIMIT = 8 * 3600.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
WARN_AT = 0.8  # the default share of the limit at which the yellow light comes
PATH = ("reported", "filed", "dispatched", "accepted", "resolved", "verified", "closed")
TARGET_P99 = 1.0
TARGET_RESTORE = 10.0
TICK = 0.1  # the producer's period: one batch of rate/10 events every 100 ms
DRAIN_MIN = 30.0  # how long at least to wait after the window for its timers to fire


@dataclasses.dataclass
class Plan:
    """One round, shared by the parent and its child processes."""

    calendar: str
    cases: int
    seed: int
    window_start: float
    window: float
    limit: float
    red_share: float
    fire_share: float
    rate: int
    batch: int
    data_dir: str
    clock_offset: float = 0.0
    planned_at: float = 0.0

    @property
    def window_end(self) -> float:
        return self.window_start + self.window


# -- the rule and its stand-ins ---------------------------------------------------------------


class ShiftedClock:
    """The wall clock plus a constant offset (to be inside work hours for the working run)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


class RecordingAlerts:
    """Stand-in for alerting: each firing's instant and the wall time of its emit; counts."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.firing: list[tuple[float, float]] = []
        self.counts: Counter[str] = Counter()

    async def emit(self, events: Sequence[AlertEvent]) -> None:
        t = self.clock.now()
        for ev in events:
            if ev.status == "firing":
                self.firing.append((ev.at, t))
            self.counts[f"{ev.rule}/{ev.status}"] += 1


class CountingRejects:
    """Stand-in for the dead-letter topic."""

    def __init__(self) -> None:
        self.count = 0

    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        self.count += 1


def make_clock(plan: Plan) -> Clock:
    return SystemClock() if plan.clock_offset == 0 else ShiftedClock(plan.clock_offset)


def make_rule(
    plan: Plan, clock: Clock, alerts: RecordingAlerts, rejects: CountingRejects, extra: float = 0.0
) -> tuple[CaseRule, CollectorRegistry]:
    """The rule as the service builds it (``rules.registry``), without an InfluxDB writer.

    ``extra`` seconds are added to the limits: a changed configuration.
    """
    # Cases outside the window have a category whose limits put their lights hours later.
    step = StageLimit(default=plan.limit + extra, categories={QUIET: QUIET_LIMIT + extra})
    limits = Limits(filing=step, dispatch=step, acceptance=step)
    registry = CollectorRegistry()
    ctx = RuleContext(
        cases=CasesConfig(warn_at=WARN_AT, calendar=plan.calendar, limits=limits),
        calendar=CalendarConfig(),
        alerts=alerts,
        rejects=rejects,
        registry=registry,
        clock=clock,
        data_dir=Path(plan.data_dir),
    )
    return case_rule(ctx), registry


# -- the cases --------------------------------------------------------------------------------


@dataclasses.dataclass
class CaseSpec:
    case: str
    step: str
    at: float
    red: bool
    quiet: bool
    history: list[tuple[str, float]]


def case_specs(plan: Plan) -> Iterator[CaseSpec]:
    """The cases of a round, the same in both child processes (seeded)."""
    rng = random.Random(plan.seed)
    n = plan.cases
    slots = list(range(n))
    rng.shuffle(slots)
    for i in range(n):
        at = plan.window_start + plan.window * (slots[i] + 0.5) / n
        red = rng.random() < plan.red_share
        quiet = rng.random() >= plan.fire_share
        r = rng.random()
        step = "reported" if r < 0.7 else "filed" if r < 0.9 else "dispatched"
        start = at - (1.0 if red and not quiet else WARN_AT) * plan.limit
        steps = PATH[: PATH.index(step) + 1]
        # Earlier steps 0.1 x limit apart: each finished well within its limit.
        history = [
            (s, start - (len(steps) - 1 - j) * 0.1 * plan.limit) for j, s in enumerate(steps)
        ]
        yield CaseSpec(f"C{plan.seed % 1000:03d}-{i:06d}", step, at, red, quiet, history)


def case_event(
    case: str, event: str, ts: float, received_at: float, k: int, quiet: bool = False
) -> CaseEvent:
    """A realistic event: new strings per event, as decoding a message makes them."""
    if event == "reported":
        return CaseEvent(
            CITY,
            case,
            ts,
            event,
            received_at,
            category=QUIET if quiet else f"01{k % 12 + 1:02d}",
            grid=f"3212020010010{k % 97:02d}",
            lat=32.39 + (k % 1000) * 1e-4,
            lon=119.41 + (k % 997) * 1e-4,
        )
    if event == "dispatched":
        return CaseEvent(CITY, case, ts, event, received_at, unit=f"unit-{k % 23:02d}")
    return CaseEvent(CITY, case, ts, event, received_at)


# -- measurements -----------------------------------------------------------------------------


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MiB."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


class GcPauses:
    """The garbage collector's full (generation 2) passes: when (perf_counter) and how long."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._t0 = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((self._t0, time.perf_counter() - self._t0))

    def summary(self, since: float = 0.0, until: float = math.inf) -> dict[str, float]:
        inside = [d for t, d in self.pauses if since <= t <= until]
        return {"gen2": len(inside), "max_ms": 1000 * max(inside, default=0.0)}


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted values (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def histogram_buckets(metrics: CaseMetrics) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the lateness histogram."""
    out = []
    for family in metrics.lateness.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                out.append((float(s.labels["le"]), s.value))
    return sorted(out)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """As Prometheus's ``histogram_quantile``: linear within the bucket."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lo_bound
            if count == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = bound, count
    return buckets[-2][0]


# -- phase 1: load ----------------------------------------------------------------------------


async def phase_load(plan: Plan) -> dict[str, Any]:
    clock = make_clock(plan)
    alerts, rejects = RecordingAlerts(clock), CountingRejects()
    base = proc_status()
    rule, _ = make_rule(plan, clock, alerts, rejects)
    events = 0
    with GcPauses() as pauses:
        async with rule:
            t0 = time.perf_counter()
            batch: list[CaseEvent] = []
            now = clock.now()
            for k, spec in enumerate(case_specs(plan)):
                for event, ts in spec.history:
                    batch.append(case_event(spec.case, event, ts, now, k, spec.quiet))
                if len(batch) >= plan.batch:
                    await rule.write(batch)
                    events += len(batch)
                    batch = []
                    now = clock.now()
            if batch:
                await rule.write(batch)
                events += len(batch)
            load_s = time.perf_counter() - t0
            loaded = proc_status()
            open_cases = len(rule.states)
            t1 = time.perf_counter()
        close_s = time.perf_counter() - t1
    db = Path(plan.data_dir) / "cases.sqlite"
    return {
        "load_s": load_s,
        "load_events": events,
        "load_events_per_s": events / load_s,
        "load_open": open_cases,
        "load_rejected": rejects.count,
        "load_alerts": dict(alerts.counts),
        "load_rss_base_mib": base["VmRSS"],
        "load_rss_mib": loaded["VmRSS"],
        "load_hwm_mib": loaded["VmHWM"],
        "close_s": close_s,
        "db_mib": sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20,
        "load_gc": pauses.summary(),
    }


# -- phases 2 and 3: restore, then timers under load --------------------------------------------


class Producer:
    """The paced ingest: ``rate`` events/s as a batch every 100 ms, on a fixed schedule."""

    def __init__(self, plan: Plan, clock: Clock, rule: CaseRule) -> None:
        self.plan, self.clock, self.rule = plan, clock, rule
        self.rng = random.Random(plan.seed + 1)
        self.ids: list[str] = []
        self.status: dict[str, str] = {}
        self.at: dict[str, float] = {}
        self.planned = 0  # cases with a light in the window
        for spec in case_specs(plan):
            self.ids.append(spec.case)
            self.status[spec.case] = spec.step
            if not spec.quiet:
                self.at[spec.case] = spec.at
                self.planned += 1
        self.sent = 0
        self.new = 0
        self.pre_empted = 0  # planned cases moved on before their instant: no firing expected
        self.write_s: list[float] = []

    def _events(self, n: int, now: float) -> list[CaseEvent]:
        out: list[CaseEvent] = []
        chosen: set[str] = set()
        for _ in range(n):
            if self.rng.random() < 1 / 3:
                case = f"N{self.plan.seed % 1000:03d}-{self.new:06d}"
                self.new += 1
                self.ids.append(case)
                self.status[case] = "reported"
                out.append(case_event(case, "reported", now, now, self.new))
                continue
            for _ in range(10):
                case = self.ids[self.rng.randrange(len(self.ids))]
                if self.status[case] != "closed" and case not in chosen:
                    break
            else:
                continue
            chosen.add(case)
            step = PATH[PATH.index(self.status[case]) + 1]
            self.status[case] = step
            if now < self.at.pop(case, -math.inf):
                self.pre_empted += 1
            out.append(case_event(case, step, now, now, self.sent + len(out)))
        return out

    async def run(self, until: float) -> tuple[float, float]:
        """Feed events until ``until`` (clock time); returns (first, last) perf_counter.

        A batch that is due while the previous write has not returned goes at once after
        it: the producer never waits on the schedule when behind, and stops at ``until``.
        """
        per = max(1, round(self.plan.rate * TICK))
        nxt = self.clock.now()
        first = last = time.perf_counter()
        while True:
            delay = nxt - self.clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.clock.now() >= until:
                break
            batch = self._events(per, self.clock.now())
            t = time.perf_counter()
            await self.rule.write(batch)
            last = time.perf_counter()
            self.write_s.append(last - t)
            self.sent += len(batch)
            nxt += TICK
        # Each batch stands for one period of the schedule, the last one included.
        return first, max(last, first + len(self.write_s) * TICK)


async def phase_run(plan: Plan) -> dict[str, Any]:
    clock = make_clock(plan)
    alerts, rejects = RecordingAlerts(clock), CountingRejects()
    with GcPauses() as pauses:
        gc.collect()
        base = proc_status()
        rule, registry = make_rule(plan, clock, alerts, rejects)
        t0 = time.perf_counter()
        await rule.__aenter__()
        restore_s = time.perf_counter() - t0
        ready = clock.now()
        restored = proc_status()
        try:
            out = await _timers_under_load(plan, clock, rule, registry, alerts, ready, pauses)
        finally:
            await rule.__aexit__(None, None, None)
    out.update(
        restore_s=restore_s,
        restore_metric_s=registry.get_sample_value("citywatch_cases_restore_seconds"),
        restored=registry.get_sample_value("citywatch_cases_restored"),
        restore_rss_base_mib=base["VmRSS"],
        restore_rss_mib=restored["VmRSS"],
        restore_hwm_mib=restored["VmHWM"],
        cases_mib=restored["VmRSS"] - base["VmRSS"],
        restore_gc=pauses.summary(t0, t0 + restore_s),
        ready_after_plan_s=ready - plan.planned_at,
        window_opened_after_ready_s=plan.window_start - ready,
        run_hwm_mib=proc_status()["VmHWM"],
        run_rejected=rejects.count,
        run_alerts=dict(alerts.counts),
    )
    return out


async def _timers_under_load(
    plan: Plan,
    clock: Clock,
    rule: CaseRule,
    registry: CollectorRegistry,
    alerts: RecordingAlerts,
    ready: float,
    pauses: GcPauses,
) -> dict[str, Any]:
    # A Prometheus scrape with every case in memory (the lit-steps gauges walk all cases).
    t = time.perf_counter()
    generate_latest(registry)
    scrape_s = time.perf_counter() - t
    producer = Producer(plan, clock, rule)
    await asyncio.sleep(max(0.0, plan.window_start - clock.now()))
    hist0 = histogram_buckets(rule.metrics)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    first, last = await producer.run(plan.window_end)
    cpu_window = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    # Wait for every timer due inside the window, then for the firing in hand (a write
    # takes the rule's lock after it).
    deadline = clock.now() + max(DRAIN_MIN, plan.window)
    while clock.now() < deadline:
        nxt = rule.timers.next_at()
        if nxt is None or nxt > plan.window_end:
            break
        await asyncio.sleep(0.02)
    nxt = rule.timers.next_at()
    drained = nxt is None or nxt > plan.window_end
    await rule.write([case_event("barrier", "reported", clock.now(), clock.now(), 0)])
    drain_s = clock.now() - plan.window_end
    gc_window = pauses.summary(wall0, time.perf_counter())
    hist1 = histogram_buckets(rule.metrics)
    hist = [(b, c1 - c0) for (b, c1), (_, c0) in zip(hist1, hist0, strict=True)]
    # Recomputing the KPIs (every cases.kpi_interval, 60 s by default: none fell in the window).
    kpi_s = math.nan
    if hasattr(rule, "kpis"):
        t = time.perf_counter()
        await rule.kpis.report()
        kpi_s = time.perf_counter() - t
    in_window = sorted(t - at for at, t in alerts.firing if ready <= at <= plan.window_end)
    stale = [t - at for at, t in alerts.firing if at < ready]
    writes = sorted(producer.write_s)
    expected = producer.planned - producer.pre_empted
    return {
        "scrape_s": scrape_s,
        "kpi_s": kpi_s,
        "firings": len(in_window),
        "firings_expected": expected,
        "firings_stale": len(stale),
        # A step completed after its instant while its firing still waited: no light.
        "firings_superseded": expected - len(in_window) - len(stale),
        "stale_max_s": max(stale, default=0.0),
        "drained": drained,
        "drain_s": drain_s,
        "lateness_p50_s": quantile(in_window, 0.50),
        "lateness_p99_s": quantile(in_window, 0.99),
        "lateness_max_s": in_window[-1] if in_window else math.nan,
        "hist_count": hist[-1][1] if hist else 0,
        "hist_p50_s": histogram_quantile(hist, 0.50),
        "hist_p99_s": histogram_quantile(hist, 0.99),
        "events_sent": producer.sent,
        "events_per_s": producer.sent / (last - first) if last > first else math.nan,
        "write_p50_ms": 1000 * quantile(writes, 0.50),
        "write_p99_ms": 1000 * quantile(writes, 0.99),
        "write_max_ms": 1000 * (writes[-1] if writes else math.nan),
        "cpu_per_s_window": cpu_window,
        "window_gc": gc_window,
        "open_at_end": len(rule.states),
    }


async def phase_recompute(plan: Plan) -> dict[str, Any]:
    """Start-up after the limits changed: every open case is replayed and saved again.

    Also timed: until every timer due at start-up has fired (with changed limits the
    rule may tick every open case at once), so the rule is caught up.
    """
    clock = make_clock(plan)
    alerts = RecordingAlerts(clock)
    rule, registry = make_rule(plan, clock, alerts, CountingRejects(), extra=60)
    t0 = time.perf_counter()
    async with rule:
        restore_s = time.perf_counter() - t0
        ready = clock.now()
        restored = registry.get_sample_value("citywatch_cases_restored")
        deadline = time.perf_counter() + 600
        while time.perf_counter() < deadline:
            nxt = rule.timers.next_at()
            if nxt is None or nxt > ready:
                break
            await asyncio.sleep(0.02)
        await rule.write([case_event("barrier", "reported", clock.now(), clock.now(), 0)])
        caught_up_s = time.perf_counter() - t0
    return {
        "recompute_s": restore_s,
        "recompute_caught_up_s": caught_up_s,
        "recomputed": restored,
        "recompute_alerts": sum(alerts.counts.values()),
    }


PHASES = {"load": phase_load, "run": phase_run, "recompute": phase_recompute}


# -- the parent: planning, rounds, summary -------------------------------------------------------


def run_child(phase: str, plan: Plan, work: Path) -> dict[str, Any]:
    plan_file, out_file = work / f"plan-{phase}.json", work / f"out-{phase}.json"
    plan_file.write_text(json.dumps(dataclasses.asdict(plan)))
    cmd = [sys.executable, __file__, "--phase", phase, "--plan", str(plan_file)]
    subprocess.run([*cmd, "--out", str(out_file)], check=True, timeout=1800)
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


def calibrate(calendar: str, n: int, work: Path) -> float:
    """Seconds per case to load and restore, from a small in-process run (no firings)."""
    data = work / f"calibrate-{calendar}"
    data.mkdir()
    now = time.time()
    offset = working_offset(now, 3600, 600) if calendar == "working" else 0.0
    plan = Plan(
        calendar, n, 999, now + offset + 3000, 30, 3600, 0.0, 1.0, 0, 1000, str(data), offset
    )

    async def go() -> float:
        loaded = await phase_load(plan)
        clock = make_clock(plan)
        rule, _ = make_rule(plan, clock, RecordingAlerts(clock), CountingRejects())
        t0 = time.perf_counter()
        async with rule:
            restore_s = time.perf_counter() - t0
        return (float(loaded["load_s"]) + restore_s) / n

    try:
        return asyncio.run(go())
    finally:
        shutil.rmtree(data, ignore_errors=True)


def working_offset(now: float, before: float, after: float) -> float:
    """0 if ``[now - before, now + after]`` is all work hours, else the shift to such a stretch."""
    cal = make_calendar("working", CalendarConfig())
    for k in range(14 * 24 * 12):  # five-minute steps over two weeks
        t = now + 300 * k
        if abs(cal.elapsed(t - before, t + after) - (before + after)) < 1e-6:
            return t - now
    raise SystemExit("no stretch of work hours long enough in the next two weeks")


def plan_round(args: argparse.Namespace, calendar: str, rnd: int, lead: float, work: Path) -> Plan:
    limit = args.limit or max(600.0, 60 * math.ceil(5 * (lead + args.window) / 60))
    now = time.time()
    offset = 0.0
    if calendar == "working":
        # Room for the history before now, and for the round (and a recompute) after it.
        offset = working_offset(now, 1.3 * limit + 60, lead + 2 * args.window + DRAIN_MIN + 300)
    data = work / f"{calendar}-{rnd}"
    data.mkdir()
    return Plan(
        calendar=calendar,
        cases=args.cases,
        seed=args.seed + rnd,
        window_start=now + offset + lead,
        window=args.window,
        limit=limit,
        red_share=args.red_share,
        fire_share=args.fire_share,
        rate=args.rate,
        batch=args.batch,
        data_dir=str(data),
        clock_offset=offset,
        planned_at=now + offset,
    )


def fmt_round(calendar: str, rnd: int, r: dict[str, Any]) -> str:
    return (
        f"{calendar} round {rnd}: load {r['load_events']:,} events in {r['load_s']:.1f}s "
        f"({r['load_events_per_s']:,.0f}/s, peak RSS {r['load_hwm_mib']:.0f} MiB) | "
        f"restore {r['restored']:,.0f} in {r['restore_s']:.2f}s "
        f"(metric {r['restore_metric_s']:.2f}s), cases {r['cases_mib']:.0f} MiB "
        f"(RSS {r['restore_rss_mib']:.0f}) | firings {r['firings']:,}/{r['firings_expected']:,} "
        f"lateness p50 {r['lateness_p50_s']:.3f}s p99 {r['lateness_p99_s']:.3f}s "
        f"max {r['lateness_max_s']:.3f}s | ingest {r['events_per_s']:,.0f}/s "
        f"write p99 {r['write_p99_ms']:.0f} ms | CPU {r['cpu_per_s_window']:.2f} | "
        f"GC {r['window_gc']['gen2']} full, max {r['window_gc']['max_ms']:.0f} ms"
    )


MEDIANS = (
    "load_s",
    "load_events_per_s",
    "load_hwm_mib",
    "restore_s",
    "restore_metric_s",
    "cases_mib",
    "restore_rss_mib",
    "run_hwm_mib",
    "firings",
    "firings_superseded",
    "lateness_p50_s",
    "lateness_p99_s",
    "lateness_max_s",
    "hist_p50_s",
    "hist_p99_s",
    "events_per_s",
    "write_p50_ms",
    "write_p99_ms",
    "cpu_per_s_window",
    "scrape_s",
    "kpi_s",
)


def summarise(calendar: str, rate: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    med = {k: statistics.median(float(r[k]) for r in rounds) for k in MEDIANS}
    ok_restore = med["restore_s"] < TARGET_RESTORE
    ok_p99 = med["lateness_p99_s"] < TARGET_P99 and all(r["drained"] for r in rounds)
    ok_rate = med["events_per_s"] >= 0.95 * rate
    r0 = rounds[0]
    gc_max = max(r["window_gc"]["max_ms"] for r in rounds)
    gc_n = statistics.median(r["window_gc"]["gen2"] for r in rounds)
    print(f"\n{calendar} calendar, {len(rounds)} rounds (medians):")
    print(
        f"  load       {r0['load_open']:,} open cases from {r0['load_events']:,} events: "
        f"{med['load_s']:.1f}s ({med['load_events_per_s']:,.0f} events/s), "
        f"peak RSS {med['load_hwm_mib']:.0f} MiB; SQLite {r0['db_mib']:.0f} MiB"
    )
    print(
        f"  restore    {med['restore_s']:.2f}s (metric {med['restore_metric_s']:.2f}s); "
        f"open cases take {med['cases_mib']:.0f} MiB (RSS {med['restore_rss_mib']:.0f} MiB, "
        f"peak {med['run_hwm_mib']:.0f} MiB)"
    )
    if "recompute_s" in r0:
        print(
            f"  recompute  start-up after a change of limits, round 1: "
            f"{r0['recompute_s']:.1f}s for {r0['recomputed']:,.0f} open cases, "
            f"caught up (timers due at start-up fired) after {r0['recompute_caught_up_s']:.1f}s"
        )
    print(
        f"  timers     {med['firings']:,.0f} firings in {r0['window']:.0f}s "
        f"({med['firings'] / r0['window']:,.0f}/s): lateness p50 {med['lateness_p50_s']:.3f}s "
        f"p99 {med['lateness_p99_s']:.3f}s max {med['lateness_max_s']:.3f}s "
        f"(histogram p50 {med['hist_p50_s']:.3f}s p99 {med['hist_p99_s']:.3f}s)"
    )
    print(
        f"  ingest     {med['events_per_s']:,.0f} of {rate:,} events/s; write p50 "
        f"{med['write_p50_ms']:.0f} ms p99 {med['write_p99_ms']:.0f} ms; process CPU "
        f"{med['cpu_per_s_window']:.2f} s/s; {gc_n:.0f} full GC passes (max {gc_max:.0f} ms)"
    )
    print(
        f"  also       one /metrics scrape {1000 * med['scrape_s']:.0f} ms; "
        f"one KPI recomputation {med['kpi_s']:.2f}s"
    )
    print(f"  target     restore < {TARGET_RESTORE:.0f} s: {'PASS' if ok_restore else 'FAIL'}")
    print(f"  target     p99 lateness < {TARGET_P99:.0f} s: {'PASS' if ok_p99 else 'FAIL'}")
    print(f"  target     {rate:,} events/s sustained: {'PASS' if ok_rate else 'FAIL'}")
    return {
        "rounds": rounds,
        "median": med,
        "pass_restore": ok_restore,
        "pass_p99": ok_p99,
        "pass_rate": ok_rate,
    }


def git_commit() -> str:
    """The checked-out commit (with ``+`` when the working tree differs), or ``unknown``."""
    try:
        run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True)
        head = run(["git", "rev-parse", "--short", "HEAD"], check=True).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=1000, help="case events/s during the window")
    ap.add_argument("--window", type=float, default=30.0, help="seconds the instants spread over")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the natural calendar")
    ap.add_argument("--working-rounds", type=int, default=1, help="rounds of the working one")
    ap.add_argument("--calendars", default="natural,working")
    ap.add_argument("--batch", type=int, default=1000, help="events per write during the load")
    ap.add_argument("--limit", type=float, help="step limit, seconds (default: automatic)")
    ap.add_argument("--red-share", type=float, default=0.2, help="share of red lights")
    ap.add_argument(
        "--fire-share",
        type=float,
        default=1.0,
        help="share of the cases with a light in the window",
    )
    ap.add_argument("--no-recompute", action="store_true", help="skip the recompute start-up")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        plan = Plan(**json.loads(args.plan.read_text()))
        args.out.write_text(json.dumps(asyncio.run(PHASES[args.phase](plan))))
        return 0

    t_start = time.perf_counter()
    calendars = args.calendars.split(",")
    summary: dict[str, Any] = {"cases": args.cases, "rate": args.rate, "window": args.window}
    with tempfile.TemporaryDirectory(prefix="cw-bench-cases-") as tmp:
        work = Path(tmp)
        for calendar in calendars:
            per_case = calibrate(calendar, min(5000, args.cases), work)
            lead = 1.5 * per_case * args.cases + 8
            rounds: list[dict[str, Any]] = []
            n_rounds = args.rounds if calendar == "natural" else args.working_rounds
            for rnd in range(1, n_rounds + 1):
                plan = plan_round(args, calendar, rnd, lead, work)
                if plan.clock_offset:
                    shifted = datetime.fromtimestamp(plan.planned_at, SHANGHAI)
                    print(
                        f"{calendar}: outside work hours; clock moved by "
                        f"{plan.clock_offset / 3600:+.2f} h (to {shifted:%a %Y-%m-%d %H:%M} CST)",
                        flush=True,
                    )
                result = {
                    "round": rnd,
                    "lead_s": lead,
                    "limit_s": plan.limit,
                    "window": plan.window,
                    "clock_offset_s": plan.clock_offset,
                    **run_child("load", plan, work),
                    **run_child("run", plan, work),
                }
                if rnd == 1 and not args.no_recompute:
                    result.update(run_child("recompute", plan, work))
                shutil.rmtree(plan.data_dir, ignore_errors=True)
                rounds.append(result)
                print(fmt_round(calendar, rnd, result), flush=True)
                if result["firings_stale"]:
                    print(
                        f"  warning: {result['firings_stale']} instants fell before the rule was "
                        f"up (lead {lead:.0f}s too short); left out of the lateness",
                        flush=True,
                    )
                if not result["drained"]:
                    print("  warning: timers due in the window were still pending", flush=True)
                lead = max(15.0, 1.5 * max(r["ready_after_plan_s"] for r in rounds) + 5)
            if rounds:
                summary[calendar] = summarise(calendar, args.rate, rounds)
    wall = time.perf_counter() - t_start
    commit = git_commit()
    print(
        f"\nwall time {wall:.0f}s; {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"commit {commit}"
    )
    summary.update(wall_s=wall, commit=commit, python=sys.version.split()[0])
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    verdicts = ("pass_restore", "pass_p99", "pass_rate")
    return 0 if all(summary[c][v] for c in calendars for v in verdicts) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
