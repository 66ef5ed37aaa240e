"""Thresholds and grids change without a restart; a bad new config is refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from citywatch.app.reload import Reloader
from citywatch.app.service import Service
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


async def test_the_roster_is_read_again_when_it_changes(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    roster = tmp_path / "roster.yaml"

    def write(officer: str, mtime: int) -> None:
        doc = {"cities": {"321200": {"officers": {officer: {"lead": "lead-1"}}}}}
        roster.write_text(yaml.safe_dump(doc))
        os.utime(roster, (mtime, mtime))  # a distinct mtime even within the same second

    write("off-1", 1)
    settings = settings_for(
        mosquitto.url, "", "citywatch", tmp_path / "var", devices={"roster_file": str(roster)}
    )
    async with Service(settings, ["collector"]) as svc:
        admission = svc.admission
        assert admission is not None and admission.roster is not None
        assert admission.roster.officer("321200", "off-1") is not None
        async with Reloader(svc, str(tmp_path / "var" / "citywatch.yaml"), interval=0.05) as rl:
            write("off-2", 2)
            await await_until(
                lambda: (
                    admission.roster is not None
                    and len(admission.roster.officers) == 1
                    and admission.roster.officer("321200", "off-2") is not None
                ),
                what="the new roster",
            )
            # A bad roster: refused, and the one in force stays.
            roster.write_text("cities: {'321200': {officers: {off-3: {}}}}")
            assert not await rl.reload()
            assert admission.roster.officer("321200", "off-2") is not None
