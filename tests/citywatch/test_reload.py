"""Thresholds and grids change without a restart; a bad new config is refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from citywatch.app import Service
from citywatch.reload import Reloader
from citywatch.simulate.grid import make_district, write_geojson
from tests.helpers import await_until, settings_for
from tests.services import Influx, Mosquitto


async def test_reload_on_change_and_on_sighup_and_refusal_of_a_bad_file(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "var")
    path = tmp_path / "var" / "citywatch.yaml"  # written by settings_for
    raw = yaml.safe_load(path.read_text())
    async with Service(settings, ["rules"]) as svc:
        patrols = svc.rules["patrols"]
        assert patrols.cfg.idle.window == 600 and patrols.grids is None
        async with Reloader(svc, str(path), interval=0.05) as reloader:
            grids = tmp_path / "grids.geojson"
            write_geojson(make_district(), grids)
            raw["patrols"] = {"idle": {"window": "3m"}}
            raw["grids_file"] = str(grids)
            path.write_text(yaml.safe_dump(raw))
            os.utime(path, (1, 1))  # a distinct mtime even within the same second
            await await_until(lambda: patrols.cfg.idle.window == 180, what="file change")
            assert patrols.grids is not None and len(patrols.grids.codes) == 324
            # A bad value: refused, and what was in force stays.
            raw["patrols"] = {"idle": {"window": "soon"}}
            path.write_text(yaml.safe_dump(raw))
            os.utime(path, (2, 2))
            assert not await reloader.reload()
            assert patrols.cfg.idle.window == 180
            # SIGHUP applies a good file.
            raw["patrols"] = {"idle": {"window": "4m"}}
            path.write_text(yaml.safe_dump(raw))
            before = reloader.reloads
            os.kill(os.getpid(), signal.SIGHUP)
            await await_until(lambda: reloader.reloads > before, what="SIGHUP reload")
            assert patrols.cfg.idle.window == 240
