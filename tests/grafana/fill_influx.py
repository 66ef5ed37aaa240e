"""Fill an InfluxDB database through the real pipeline: simulator -> broker -> service.

The simulator replays a few hours of a small, misbehaving fleet in seconds; the
service runs with short patrol thresholds and case limits, so every measurement
the dashboards chart (alerts and KPIs included) is written by citywatch itself;
``patrol_coverage`` comes when the service stops (the rule writes it then).
A handful of malformed messages, published like any handheld would, give
``ingest_rejected`` points; two more report a GPS lost and a handheld offline now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from citywatch.simulate import SimConfig, make_district, run_simulation, write_geojson
from tests.helpers import Publisher, await_until, connected, settings_for
from tests.services import Influx, Mosquitto

CITY = "321200"
PATROLS = {
    "idle": {"window": "60s", "radius": "50m", "max_acc": "50m"},
    "out_of_grid": {"after": "30s", "buffer": "20m"},
    "gps_lost": {"after": "3s"},
    "offline": {"after": "3s"},
}
CASES = {
    "warn_at": 0.5,
    "calendar": "natural",
    "kpi_interval": "1s",
    "limits": {
        "filing": "2m",
        "dispatch": "2m",
        "acceptance": "5m",
        "disposal": "20m",
        "verification": "10m",
        "closing": "10m",
    },
}
SIM = SimConfig(
    devices=8,
    cases_per_day=2000.0,
    city=CITY,
    idle_share=0.3,
    leave_grid_share=0.3,
    offline_share=0.15,
    gps_lost_share=0.15,
)
HISTORY = 3 * 3600.0
SPEEDUP = 2000.0

# What must be stored before the dashboards are checked: (measurement, WHERE clause).
EXPECTED: tuple[tuple[str, str], ...] = (
    # The replay has caught up with the present: "last 15 min" panels have data.
    ("gps", "time > now() - 1m"),
    ("heartbeat", ""),
    ("device_status", "\"status\" = 'offline'"),
    ("shift", "\"action\" = 'start'"),
    ("case_event", "\"event\" = 'closed'"),
    ("ingest_rejected", ""),
    ("case_kpi", "\"unit\" != '_all'"),
    ("alert_event", "\"rule\" = 'case_overdue'"),
    ("alert_event", "\"rule\" = 'case_warning'"),
    ("alert_event", "\"rule\" = 'patrol_out_of_grid'"),
    ("alert_event", "\"rule\" = 'device_offline'"),
    ("alert", "\"change\" = 'opened'"),
)


def _extra_messages() -> list[tuple[str, object]]:
    """Rejected messages; a GPS lost and a handheld offline now (the replay's are past)."""
    dev = f"citywatch/{CITY}/devices/dev-bad"
    now = time.time()
    return [
        (f"citywatch/{CITY}/devices/dev-nogps/heartbeat", {"ts": now, "gps": False}),
        (f"citywatch/{CITY}/devices/dev-gone/status", {"ts": now, "status": "offline"}),
        (f"{dev}/gps", {"ts": now, "lat": 95.0, "lon": 119.9}),
        (f"{dev}/gps", b"{not json"),
        (f"{dev}/heartbeat", {"battery": 50}),
    ]


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exports, labelled families with no child yet included."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


async def fill(mosquitto: Mosquitto, influx: Influx, db: str, workdir: Path) -> set[str]:
    """Run simulator and service until every ``EXPECTED`` series has points.

    Returns the names of the Prometheus samples the service exports.
    """
    grids = workdir / "grids.geojson"
    workdir.mkdir(parents=True, exist_ok=True)
    write_geojson(make_district(), grids)
    settings = settings_for(
        mosquitto.url, influx.url, db, workdir / "var", patrols=PATROLS, cases=CASES
    )
    settings = dataclasses.replace(settings, grids_file=str(grids))
    missing = list(EXPECTED)

    def stored() -> bool:
        while missing:
            measurement, where = missing[0]
            if not influx.count(measurement, db, where):
                return False
            missing.pop(0)
        return True

    stop = threading.Event()
    async with connected(settings, ["collector", "rules"]) as svc:
        loop = asyncio.get_running_loop()
        sim = loop.run_in_executor(
            None,
            lambda: run_simulation(
                SIM,
                mosquitto.url,
                speedup=SPEEDUP,
                history=HISTORY,
                stop=stop,
                client_id=f"sim-{db}",
            ),
        )
        try:
            with Publisher(mosquitto.port) as pub:
                pub.send_all(_extra_messages())
            try:
                await await_until(stored, timeout=30, what="every dashboard measurement")
            except TimeoutError as exc:
                raise TimeoutError(f"no points yet for {missing}") from exc
            names = exported_names(svc.registry)
        finally:
            stop.set()
            await sim
    # The patrol rule writes coverage every minute, at shift end and when it stops.
    if not influx.count("patrol_coverage", db):
        raise AssertionError("the patrol rule wrote no patrol_coverage when it stopped")
    return names
