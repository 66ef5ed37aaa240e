"""Patrol rules over a real broker, with windows of a few seconds: each fires and resolves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from citywatch.app.service import Service
from citywatch.geo import offset_m
from citywatch.rules.patrols.grids import Grids
from citywatch.simulate.grid import make_district, write_geojson
from tests.helpers import Publisher, await_until, connected, settings_for, shift_start
from tests.services import Influx, Mosquitto

CITY = "321200"
PATROLS = {
    "idle": {"window": "3s", "radius": "50m", "max_acc": "50m"},
    "out_of_grid": {"after": "2s", "buffer": "20m"},
    "gps_lost": {"after": "2s"},
    "offline": {"after": "3s"},
}


def count(svc: Service, rule: str, status: str) -> float:
    labels = {"rule": rule, "status": status}
    return svc.registry.get_sample_value("citywatch_rule_alert_events_total", labels) or 0.0


async def test_idle_out_of_grid_gps_lost_and_offline_fire_and_resolve(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    fc = make_district()
    grids_file = tmp_path / "grids.geojson"
    write_geojson(fc, grids_file)
    cell = sorted(Grids.from_geojson(fc).codes)[0]
    centre = Grids.from_geojson(fc).centroid(cell)
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "var", patrols=PATROLS)
    import dataclasses

    settings = dataclasses.replace(settings, grids_file=str(grids_file))
    dev = f"citywatch/{CITY}/devices/dev-7"
    async with connected(settings, ["collector", "rules"]) as svc:
        with Publisher(mosquitto.port) as pub:
            start = shift_start("dev-7", "lead-1", cell)
            pub.send_all([(f"citywatch/{CITY}/officers/off-7/shift", start)])

            def fix(east: float) -> tuple[str, dict[str, float]]:
                lon, lat = offset_m(*centre, east, 0.0)
                return f"{dev}/gps", {"ts": time.time(), "lat": lat, "lon": lon, "acc": 8}

            async def walk(east: float, until: float) -> None:
                while time.time() < until:
                    pub.send_all([fix(east), (f"{dev}/heartbeat", {"ts": time.time()})])
                    await asyncio.sleep(0.25)  # pacing a handheld, not waiting for a result

            # Standing still in the cell: idle after the 3 s window.
            await walk(0.0, time.time() + 4.0)
            await await_until(lambda: count(svc, "patrol_idle", "firing") == 1, what="idle")
            # Walking off 300 m east: idle resolves, out-of-grid after 2 s outside.
            for k in range(12):
                pub.send_all([fix(30.0 * k)])
                await asyncio.sleep(0.25)
            await walk(330.0, time.time() + 2.5)
            await await_until(lambda: count(svc, "patrol_idle", "resolved") == 1, what="moving")
            await await_until(
                lambda: count(svc, "patrol_out_of_grid", "firing") == 1, what="out of grid"
            )
            await walk(0.0, time.time() + 1.0)
            await await_until(
                lambda: count(svc, "patrol_out_of_grid", "resolved") == 1, what="back inside"
            )
            # Heartbeats but no fixes: GPS lost; then nothing at all: offline.
            for _ in range(12):
                pub.send_all([(f"{dev}/heartbeat", {"ts": time.time(), "gps": False})])
                await asyncio.sleep(0.25)
            await await_until(lambda: count(svc, "patrol_gps_lost", "firing") == 1, what="gps")
            await await_until(lambda: count(svc, "device_offline", "firing") == 1, what="offline")
            assert count(svc, "patrol_gps_lost", "resolved") == 1
            pub.send_all([fix(0.0)])
            await await_until(
                lambda: count(svc, "device_offline", "resolved") == 1, what="back online"
            )
    assert influx.count("alert_event", influx_db) >= 8
