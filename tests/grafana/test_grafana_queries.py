"""Every query of every dashboard, run against data the real pipeline stored.

The simulator replays a misbehaving fleet through Mosquitto into the service, which
writes InfluxDB (fills in tests/grafana/fill_influx.py). Template variables are
resolved the way Grafana does, by running their own queries in order; each panel's
InfluxQL must then return rows with the columns (or tags) the panel reads.
Prometheus queries must name metrics the same running service exported.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from citywatch.grafana.build import dashboards
from tests.grafana.fill_influx import fill
from tests.services import Influx, Mosquitto

JSON = dict[str, Any]
BOARDS = dashboards()

# (dashboard uid, panel id, refId) -> columns or tags the panel reads.
EXPECTED: dict[tuple[str, int, str], set[str]] = {
    ("citywatch-command", 1, "A"): {"lat", "lon", "device"},
    ("citywatch-command", 1, "B"): {"lat", "lon", "officer", "device", "status", "rule"},
    ("citywatch-command", 3, "A"): {"step", "status", "fingerprint", "rule"},
    ("citywatch-command", 4, "A"): {"subject", "step", "unit", "overdue_since", "fingerprint"},
    ("citywatch-command", 5, "A"): {"alert_id", "status", "subject", "rule", "severity"},
    ("citywatch-command", 7, "A"): {"online"},
    ("citywatch-command", 7, "B"): {"gps_lost"},
    ("citywatch-command", 7, "C"): {"offline"},
    ("citywatch-command", 10, "A"): {"fixes_per_s"},
    ("citywatch-patrols", 1, "A"): {"lat", "lon"},
    ("citywatch-patrols", 1, "B"): {"lat", "lon", "status", "rule"},
    ("citywatch-patrols", 2, "A"): {"km"},
    ("citywatch-patrols", 3, "A"): {"share"},
    ("citywatch-patrols", 4, "A"): {"assigned", "visited", "share", "distance_m"},
    ("citywatch-patrols", 5, "A"): {"since", "held", "status", "rule"},
    ("citywatch-patrols", 6, "A"): {"heartbeat_gap", "device"},
    ("citywatch-patrols", 6, "B"): {"fix_gap", "device"},
    ("citywatch-patrols", 7, "A"): {"battery", "device"},
    ("citywatch-patrols", 8, "A"): {"on_duty", "device", "grids", "action"},
    ("citywatch-cases", 1, "A"): {"count", "event"},
    ("citywatch-cases", 2, "A"): {"unit", "filed", "closing_rate", "on_time_disposal_rate"},
    ("citywatch-cases", 3, "A"): {"unit", "on_time_closing_rate", "closing_rate"},
    ("citywatch-cases", 4, "A"): {"category", "dispatched"},
    ("citywatch-cases", 5, "A"): {"category", "fingerprint"},
    ("citywatch-cases", 6, "A"): {"case"},
    ("citywatch-service", 11, "A"): {"sum", "reason"},
}
TIME_FILTER = "time > now() - 12h"


@pytest.fixture(scope="module")
def filled(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, set[str]]]:
    with influx.fresh_db() as db:
        names = asyncio.run(fill(mosquitto, influx, db, tmp_path_factory.mktemp("grafana")))
        yield db, names


def _rows(influx: Influx, db: str, query: str) -> list[JSON]:
    data = influx.query(query, db)
    return [s for r in data.get("results", []) for s in r.get("series", [])]


def _substitute(query: str, values: dict[str, str]) -> str:
    out = query.replace("$timeFilter", TIME_FILTER).replace("$__interval", "1m")
    for name in sorted(values, key=len, reverse=True):
        out = out.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert not re.search(r"\$[A-Za-z_{]", out), f"unresolved variable in {out}"
    return out


def _variable_values(influx: Influx, db: str, var: JSON, values: dict[str, str]) -> list[str]:
    found: list[str] = []
    for series in _rows(influx, db, _substitute(var["query"], values)):
        for row in series.get("values", []):
            value = str(row[1] if len(row) > 1 else row[0])
            if var["regex"]:
                match = re.search(var["regex"].strip("/"), value)
                if not match:
                    continue
                value = match.group(1)
            if value not in found:
                found.append(value)
    return found


def _resolve(influx: Influx, db: str, board: JSON, district: str = "all") -> dict[str, str]:
    """Pick each variable's value the way Grafana would, in order (All where offered)."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["datasource"]["type"] != "influxdb":
            values[var["name"]] = ".*"
            continue
        options = _variable_values(influx, db, var, values)
        assert options, f"{board['uid']}: variable {var['name']} has no values"
        if var["name"] == "officer":
            # The officer with idle/out-of-grid periods, so that every patrol panel has rows.
            q = 'SELECT "officer" FROM "alert_event" WHERE "rule" = \'patrol_out_of_grid\''
            officer = _rows(influx, db, q)[0]["values"][0][1]
            assert officer in options
            values["officer"] = officer
        elif var["name"] == "district" and district == "first":
            assert all(re.fullmatch(r"\d{6}", d) for d in options), options
            values["district"] = options[0]
        elif var["includeAll"]:
            all_value = var["allValue"]
            values[var["name"]] = all_value or "(" + "|".join(map(re.escape, options)) + ")"
        else:
            values[var["name"]] = options[0]
    return values


def _influx_targets() -> list[tuple[str, int, JSON]]:
    return [
        (uid, p["id"], t)
        for uid, board in ((b["uid"], b) for b in BOARDS.values())
        for p in board["panels"]
        for t in p["targets"]
        if t["datasource"]["type"] == "influxdb"
    ]


def test_every_influx_target_has_expectations() -> None:
    keys = {(uid, pid, t["refId"]) for uid, pid, t in _influx_targets()}
    assert keys == set(EXPECTED)


@pytest.mark.parametrize("district", ["all", "first"])
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_influxql_query_returns_what_its_panel_reads(
    name: str, district: str, influx: Influx, filled: tuple[str, set[str]]
) -> None:
    db, _ = filled
    board = BOARDS[name]
    values = _resolve(influx, db, board, district)
    for panel in board["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] != "influxdb":
                continue
            query = _substitute(target["query"], values)
            series = _rows(influx, db, query)
            where = f"{board['uid']} panel {panel['id']} {panel['title']} {target['refId']}"
            assert series and any(s.get("values") for s in series), f"{where}: no rows: {query}"
            seen = {c for s in series for c in [*s["columns"], *(s.get("tags") or {})]}
            missing = EXPECTED[(board["uid"], panel["id"], target["refId"])] - seen
            assert not missing, f"{where}: no {missing} in {seen}: {query}"
            non_null = {
                c
                for s in series
                for row in s["values"]
                for c, v in zip(s["columns"], row, strict=True)
                if v is not None
            }
            assert non_null - {"time"}, f"{where}: only nulls: {query}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_annotation_queries_return_text_and_tags(
    name: str, influx: Influx, filled: tuple[str, set[str]]
) -> None:
    db, _ = filled
    board = BOARDS[name]
    values = _resolve(influx, db, board)
    queries = [a for a in board["annotations"]["list"] if a["datasource"]["type"] == "influxdb"]
    assert queries
    for anno in queries:
        series = _rows(influx, db, _substitute(anno["query"], values))
        assert series and series[0]["values"], f"{name}: annotation {anno['name']} empty"
        wanted = {anno["textColumn"], *anno["tagsColumn"].split(",")}
        assert wanted <= set(series[0]["columns"])
    tags = [a for a in board["annotations"]["list"] if a.get("target", {}).get("type") == "tags"]
    assert tags and tags[0]["target"]["tags"] == ["citywatch"]


def _prometheus_queries() -> list[tuple[str, str]]:
    out = []
    for board in BOARDS.values():
        for panel in board["panels"]:
            for t in panel["targets"]:
                if t["datasource"]["type"] == "prometheus":
                    out.append((f"{board['uid']} {panel['title']}", t["expr"]))
        for var in board["templating"]["list"]:
            if var["datasource"]["type"] == "prometheus":
                out.append((f"{board['uid']} ${var['name']}", var["query"]))
    return out


def test_prometheus_queries_name_exported_metrics(filled: tuple[str, set[str]]) -> None:
    _, exported = filled
    queries = _prometheus_queries()
    assert len(queries) > 10
    for where, expr in queries:
        metrics = set(re.findall(r"\bcitywatch_[a-z0-9_]+", expr))
        assert metrics, f"{where}: no citywatch metric in {expr}"
        assert metrics <= exported, f"{where}: not exported: {metrics - exported}"
