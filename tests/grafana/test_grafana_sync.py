"""``citywatch grafana sync`` against a stand-in of Grafana's HTTP API (no Grafana here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from citywatch.app.cli import main
from citywatch.grafana.build import dashboards, render
from tests.grafana.grafana_standin import GrafanaStandIn

TOKEN = "glsa_test_0123456789abcdef"


@pytest.fixture
def grafana(monkeypatch: pytest.MonkeyPatch) -> Iterator[GrafanaStandIn]:
    with GrafanaStandIn(TOKEN) as standin:
        monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
        monkeypatch.setenv("GRAFANA_URL", standin.url)
        yield standin


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["grafana", "sync", *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out + err


def test_first_sync_creates_folder_and_dashboards_second_changes_nothing(
    grafana: GrafanaStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys)
    assert code == 0, out
    assert grafana.folders["citywatch"]["title"] == "citywatch"
    boards = dashboards()
    assert set(grafana.dashboards) == {b["uid"] for b in boards.values()}
    for board in boards.values():
        stored = grafana.dashboards[board["uid"]]
        assert stored["folderUid"] == "citywatch"
        assert stored["dashboard"]["version"] == 1
        assert stored["dashboard"]["annotations"] == board["annotations"]
    assert "folder citywatch: created" in out and out.count(": created") == 5
    writes = list(grafana.writes)

    code, out = run(capsys)
    assert code == 0
    assert grafana.writes == writes
    assert out.count(": unchanged") == len(boards) and "created" not in out


def test_a_changed_dashboard_is_updated_and_only_it(
    grafana: GrafanaStandIn, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, board in dashboards().items():
        (tmp_path / name).write_text(render(board), encoding="utf-8")
    assert run(capsys, "--dir", str(tmp_path))[0] == 0
    path = tmp_path / "cases.json"
    board = json.loads(path.read_text(encoding="utf-8"))
    board["panels"][0]["title"] = "各环节事件数 (changed)"
    path.write_text(render(board), encoding="utf-8")

    code, out = run(capsys, "--dir", str(tmp_path))
    assert code == 0
    assert "dashboard citywatch-cases: updated" in out and out.count("unchanged") == 3
    stored = grafana.dashboards["citywatch-cases"]["dashboard"]
    assert stored["version"] == 2 and stored["panels"][0]["title"].endswith("(changed)")


def test_a_dashboard_moved_to_another_folder_is_moved_back(
    grafana: GrafanaStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys)[0] == 0
    grafana.dashboards["citywatch-service"]["folderUid"] = ""
    code, out = run(capsys)
    assert code == 0 and "dashboard citywatch-service: updated" in out
    assert grafana.dashboards["citywatch-service"]["folderUid"] == "citywatch"


def test_a_bad_token_is_a_clear_error(
    grafana: GrafanaStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_wrong_secret_value")
    code, out = run(capsys)
    assert code == 1
    assert "refused the token (401)" in out and "GRAFANA_TOKEN" in out
    assert "glsa_wrong_secret_value" not in out
    assert not grafana.writes


def test_missing_token_or_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.setenv("GRAFANA_URL", "http://127.0.0.1:9")
    code, out = run(capsys)
    assert code == 2 and "GRAFANA_TOKEN is not set" in out
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.delenv("GRAFANA_URL")
    code, out = run(capsys)
    assert code == 2 and "GRAFANA_URL" in out


def test_standin_keeps_grafanas_version_semantics(grafana: GrafanaStandIn) -> None:
    api = GrafanaApi.from_url(grafana.url, credential=TOKEN)
    api.folder.create_folder("citywatch", uid="citywatch")
    board = {"uid": "x", "title": "x", "panels": []}
    saved = api.dashboard.update_dashboard({"dashboard": board, "folderUid": "citywatch"})
    assert saved["version"] == 1
    stale = {**board, "version": 0}
    with pytest.raises(GrafanaClientError) as excinfo:
        api.dashboard.update_dashboard({"dashboard": stale, "folderUid": "citywatch"})
    assert excinfo.value.status_code == 412
    saved = api.dashboard.update_dashboard(
        {"dashboard": stale, "folderUid": "citywatch", "overwrite": True}
    )
    assert saved["version"] == 2
    assert api.dashboard.get_dashboard("x")["meta"]["folderUid"] == "citywatch"
    assert [h["uid"] for h in api.search.search_dashboards(folder_uids="citywatch")] == ["x"]
