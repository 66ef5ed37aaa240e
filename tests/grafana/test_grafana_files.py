"""The committed dashboards are the generator's output; provisioning loads and points at them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from citywatch.grafana.build import DEFAULT_DIR, dashboards, main, render
from citywatch.grafana.model import INFLUX, PROMETHEUS

ROOT = Path(__file__).resolve().parents[2] / "grafana"


def test_committed_json_equals_the_generator_output() -> None:
    assert main(["--check"]) == 0, "run: python -m citywatch.grafana.build"
    files = sorted(p.name for p in DEFAULT_DIR.glob("*.json"))
    assert files == sorted(dashboards())
    for name, board in dashboards().items():
        text = (DEFAULT_DIR / name).read_text(encoding="utf-8")
        assert text == render(board)
        assert json.loads(text)["uid"] == board["uid"]


def test_panel_ids_are_unique_and_there_is_no_grafana_id() -> None:
    for board in dashboards().values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and "id" not in board and "version" not in board
        assert all(p["description"] for p in board["panels"])


def test_provisioning_datasources_use_env_and_the_dashboards_uids() -> None:
    doc = yaml.safe_load((ROOT / "provisioning/datasources/citywatch.yaml").read_text())
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert set(by_uid) == {INFLUX["uid"], PROMETHEUS["uid"]}
    influx, prom = by_uid[INFLUX["uid"]], by_uid[PROMETHEUS["uid"]]
    assert influx["type"] == "influxdb" and prom["type"] == "prometheus"
    assert influx["url"] == "$INFLUX_URL" and influx["jsonData"]["dbName"] == "$INFLUX_DB"
    assert prom["url"] == "$PROMETHEUS_URL"
    assert influx["secureJsonData"]["password"] == "$INFLUX_PASSWORD"
    secrets = [v for d in doc["datasources"] for v in d.get("secureJsonData", {}).values()]
    assert all(str(v).startswith("$") for v in secrets), "secrets come from the environment"


def test_provisioning_provider_points_at_the_dashboards_directory() -> None:
    doc = yaml.safe_load((ROOT / "provisioning/dashboards/citywatch.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folderUid"] == "citywatch"
    path = provider["options"]["path"]
    compose = yaml.safe_load((ROOT.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
