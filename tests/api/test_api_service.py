"""The API against the real service, broker and InfluxDB: endpoints, auth, scoping, bad input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from citywatch.app.service import Service
from tests.api.service import CITY, TOKENS, Api, api_service, auth
from tests.helpers import Publisher, await_until, shift_start
from tests.services import Influx, Mosquitto

GRID_7 = "321202001001001"
GRID_8 = "321203001001001"


@pytest.fixture
async def running(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, Api]]:
    async with api_service(mosquitto, influx, influx_db, tmp_path, tokens=TOKENS) as running:
        yield running


def start_shifts(port: int) -> None:
    now = time.time()
    with Publisher(port) as pub:
        for officer, device, grid, lead in (
            ("off-7", "dev-7", GRID_7, "lead-7"),
            ("off-8", "dev-8", GRID_8, "lead-8"),
        ):
            shift = shift_start(device, lead, grid, ts=now)
            pub.send_all(
                [
                    (f"citywatch/{CITY}/officers/{officer}/shift", shift),
                    (
                        f"citywatch/{CITY}/devices/{device}/gps",
                        {"ts": now, "lat": 32.45, "lon": 119.92, "acc": 5},
                    ),
                ]
            )


async def two_alerts(svc: Service, api: Api, mosquitto: Mosquitto) -> dict[str, int]:
    start_shifts(mosquitto.port)
    assert svc.alerting is not None
    alerting = svc.alerting
    await await_until(lambda: sum(a.is_open for a in alerting.by_id.values()) == 2, what="alerts")
    return {a.labels["officer"]: a.id for a in alerting.by_id.values()}


async def test_every_endpoint_answers_with_its_documented_shape(
    running: tuple[Service, Api], mosquitto: Mosquitto
) -> None:
    svc, api = running
    ids = await two_alerts(svc, api, mosquitto)
    status, doc = await api.call("GET", "/api/v1/devices")
    assert status == 200 and doc["total"] == 2
    assert {d["device"] for d in doc["items"]} == {"dev-7", "dev-8"}
    status, doc = await api.call("GET", "/api/v1/devices/dev-7")
    assert status == 200 and doc["officer"] == "off-7" and doc["last_fix"]["lat"] == 32.45
    status, doc = await api.call("GET", "/api/v1/officers?state=offline")
    assert status == 200 and {o["officer"] for o in doc["items"]} == {"off-7", "off-8"}
    assert doc["items"][0]["coverage"]["assigned"] == 1
    status, doc = await api.call("GET", "/api/v1/alerts?severity=red")
    assert status == 200 and doc["total"] == 2 and doc["items"][0]["rule"] == "device_offline"
    status, doc = await api.call("GET", f"/api/v1/alerts/{ids['off-7']}")
    assert status == 200 and doc["history"][0]["change"] == "opened"
    status, doc = await api.call("GET", "/api/v1/alerts?limit=1")
    assert doc["total"] == 2 and len(doc["items"]) == 1 and doc["next"] == 1
    status, doc = await api.call("GET", "/api/v1/alerts?limit=1&offset=1")
    assert len(doc["items"]) == 1 and doc["next"] is None
    status, doc = await api.call("GET", "/api/v1/cases?light=red")
    assert status == 200 and doc["items"] == []
    status, doc = await api.call("GET", "/api/v1/kpis")
    assert status == 200 and doc["items"] == []
    status, doc = await api.call("GET", "/api/v1/officers/off-7/track")
    assert status == 200 and doc["type"] == "Feature"
    assert doc["properties"]["devices"] == ["dev-7"]
    status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and "/api/v1/alerts/{id}/ack" in doc["paths"]


async def test_acknowledge_and_silence_through_the_api(
    running: tuple[Service, Api], mosquitto: Mosquitto
) -> None:
    svc, api = running
    ids = await two_alerts(svc, api, mosquitto)
    status, doc = await api.call(
        "POST", f"/api/v1/alerts/{ids['off-7']}/ack", json={"note": "已电话联系"}
    )
    assert status == 200 and doc["status"] == "acknowledged"
    assert doc["ack"]["by"] == "duty-desk" and doc["ack"]["note"] == "已电话联系"
    status, doc = await api.call("POST", f"/api/v1/alerts/{ids['off-7']}/ack", json={})
    assert status == 409 and "already acknowledged" in doc["error"]["message"]
    status, doc = await api.call(
        "POST",
        "/api/v1/silences",
        json={
            "matchers": [{"name": "grid", "value": "321203.*", "op": "=~"}],
            "ends_at": time.time() + 3600,
            "comment": "道路施工 road works",
        },
    )
    assert status == 201 and doc["status"] == "active"
    sid = doc["id"]
    status, doc = await api.call("GET", "/api/v1/alerts?silenced=true")
    assert [a["officer"] for a in doc["items"]] == ["off-8"]
    status, doc = await api.call("DELETE", f"/api/v1/silences/{sid}")
    assert status == 200 and doc["status"] == "expired"
    status, doc = await api.call("GET", "/api/v1/alerts?silenced=true")
    assert doc["items"] == []


async def test_tokens_roles_and_scopes(running: tuple[Service, Api], mosquitto: Mosquitto) -> None:
    svc, api = running
    ids = await two_alerts(svc, api, mosquitto)
    assert (await api.call("GET", "/api/v1/alerts", token=None))[0] == 401
    assert (await api.call("GET", "/api/v1/alerts", token="wrong-token"))[0] == 401
    status, doc = await api.call("POST", f"/api/v1/alerts/{ids['off-7']}/ack", token="wall-viewer")
    assert status == 403 and "supervisor" in doc["error"]["message"]
    # A district lead sees and acts on their district only.
    status, doc = await api.call("GET", "/api/v1/alerts", token="lead7-secret")
    assert [a["officer"] for a in doc["items"]] == ["off-7"]
    status, _ = await api.call("GET", f"/api/v1/alerts/{ids['off-8']}", token="lead7-secret")
    assert status == 404
    status, _ = await api.call(
        "POST", f"/api/v1/alerts/{ids['off-8']}/ack", token="lead7-secret", json={}
    )
    assert status == 404
    assert svc.alerting is not None and svc.alerting.by_id[ids["off-8"]].status == "firing"
    status, doc = await api.call("GET", "/api/v1/officers", token="lead8-secret")
    assert [o["officer"] for o in doc["items"]] == ["off-8"]
    status, doc = await api.call("GET", "/api/v1/devices", token="lead8-secret")
    assert [d["device"] for d in doc["items"]] == ["dev-8"]
    status, doc = await api.call(
        "POST",
        "/api/v1/silences",
        token="lead7-secret",
        json={
            "matchers": [{"name": "rule", "value": "device_offline"}],
            "ends_at": time.time() + 86400,
            "comment": "x",
        },
    )
    assert status == 403 and "city" in doc["error"]["message"]
    # Within its scope, by prefix: its own silence is listed and can be ended.
    status, doc = await api.call(
        "POST",
        "/api/v1/silences",
        token="lead7-secret",
        json={
            "matchers": [
                {"name": "city", "value": CITY},
                {"name": "grid", "value": "321202001.*", "op": "=~"},
            ],
            "ends_at": time.time() + 86400,
            "comment": "x",
        },
    )
    assert status == 201, doc
    status, listed = await api.call("GET", "/api/v1/silences", token="lead7-secret")
    assert [s["id"] for s in listed["items"]] == [doc["id"]]
    assert (await api.call("GET", "/api/v1/silences", token="lead8-secret"))[1]["items"] == []
    assert (await api.call("DELETE", f"/api/v1/silences/{doc['id']}", token="lead7-secret"))[
        0
    ] == 200
    # KPIs are per city and unit: a grid-scoped token cannot read them.
    status, doc = await api.call("GET", "/api/v1/kpis", token="lead7-secret")
    assert status == 403 and "grids" in doc["error"]["message"]
    # With tokens, /metrics needs an admin's by default (api.metrics_public unset); /healthz
    # is always open.
    async with api.session.get(api.base + "/metrics") as r:
        assert r.status == 401
    assert (await api.call("GET", "/metrics", token="wall-viewer"))[0] == 403
    async with api.session.get(api.base + "/metrics", headers=auth("root-admin-1")) as r:
        assert r.status == 200 and b"citywatch_http_connections" in await r.read()
    async with api.session.get(api.base + "/healthz") as r:
        assert r.status == 200


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "words"),
    [
        ("GET", "/api/v1/alerts?status=bogus", {}, 400, "status"),
        ("GET", "/api/v1/alerts?limit=0", {}, 400, "limit"),
        ("GET", "/api/v1/alerts?limit=abc", {}, 400, "integer"),
        ("GET", "/api/v1/alerts?city=12", {}, 400, "city"),
        ("GET", "/api/v1/alerts/abc", {}, 400, "alert id"),
        # A superscript two is a digit to str.isdigit() but not to int(): was a 500.
        ("GET", "/api/v1/alerts/%C2%B2", {}, 400, "alert id"),
        ("GET", "/api/v1/alerts/999999", {}, 404, "no alert"),
        (
            "POST",
            "/api/v1/alerts/1/ack",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed",
        ),
        ("POST", "/api/v1/alerts/1/ack", {"json": [1, 2]}, 400, "object"),
        (
            "POST",
            "/api/v1/alerts/1/ack",
            {"data": b"[" * 50_000, "headers": {"Content-Type": "application/json"}},
            400,
            "malformed",
        ),
        ("POST", "/api/v1/alerts/1/ack", {"json": {"note": 5}}, 400, "note"),
        (
            "POST",
            "/api/v1/alerts/1/ack",
            {"data": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
            "JSON",
        ),
        ("POST", "/api/v1/alerts/1/ack", {"json": {"note": "x" * 100_000}}, 413, "too large"),
        (
            "POST",
            "/api/v1/silences",
            {"json": {"matchers": [], "ends_at": time.time() + 86400, "comment": "x"}},
            400,
            "matcher",
        ),
        (
            "POST",
            "/api/v1/silences",
            {
                "json": {
                    "matchers": [{"name": "grid", "value": "(a)\\1", "op": "=~"}],
                    "ends_at": time.time() + 86400,
                    "comment": "x",
                }
            },
            400,
            "regular expression",
        ),
        (
            "POST",
            "/api/v1/silences",
            {
                "json": {
                    "matchers": [{"name": "grid", "value": "1"}],
                    "ends_at": "tomorrow",
                    "comment": "x",
                }
            },
            400,
            "ends_at",
        ),
        ("DELETE", "/api/v1/silences/nope", {}, 404, "no silence"),
        ("GET", "/api/v1/officers/bad'id/track", {}, 400, "officer id"),
        ("GET", "/api/v1/officers/off-7/track?from=2026-11-22T08:00:00", {}, 400, "offset"),
        ("GET", "/api/v1/kpis?from=2026-13", {}, 400, "month"),
        ("GET", "/api/v1/nothing", {}, 404, "no such"),
        ("PUT", "/api/v1/alerts", {}, 405, "not allowed"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    running: tuple[Service, Api],
    mosquitto: Mosquitto,
    method: str,
    path: str,
    kw: dict[str, Any],
    status: int,
    words: str,
) -> None:
    svc, api = running
    await two_alerts(svc, api, mosquitto)
    assert svc.alerting is not None
    before = {a.id: a.status for a in svc.alerting.by_id.values()}
    got, doc = await api.call(method, path, **kw)
    assert got == status, doc
    assert words.lower() in doc["error"]["message"].lower()
    assert {a.id: a.status for a in svc.alerting.by_id.values()} == before
    assert len(svc.alerting.silences) == 0


async def test_the_stream_delivers_alert_changes_and_positions_and_resumes(
    running: tuple[Service, Api], mosquitto: Mosquitto
) -> None:
    svc, api = running
    url = api.base.replace("http", "ws") + "/api/v1/stream?token=lead7-secret"
    async with api.session.ws_connect(url) as ws:
        hello = orjson.loads((await ws.receive(timeout=10)).data)
        assert hello["type"] == "hello" and hello["principal"] == "lead-7"
        ids = await two_alerts(svc, api, mosquitto)
        seen: list[dict[str, Any]] = []
        while not any(e.get("type") == "alert" for e in seen):
            seen.append(orjson.loads((await ws.receive(timeout=10)).data))
        alerts = [e for e in seen if e["type"] == "alert"]
        # Scoped: the district lead's stream carries only their district.
        assert {e["alert"]["officer"] for e in alerts} == {"off-7"}
        last = seen[-1]["resume"]
    await api.call("POST", f"/api/v1/alerts/{ids['off-7']}/ack", json={"note": "ok"})
    # Reconnecting with the resume token replays exactly what was missed.
    async with api.session.ws_connect(url + f"&resume={last}") as ws:
        assert orjson.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
        missed = orjson.loads((await ws.receive(timeout=10)).data)
        assert missed["type"] == "alert" and missed["alert"]["status"] == "acknowledged"
    async with api.session.ws_connect(url + "&resume=deadbeef.1") as ws:
        await ws.receive(timeout=10)
        assert orjson.loads((await ws.receive(timeout=10)).data)["type"] == "reset"
    await asyncio.sleep(0)


async def test_readiness_names_each_part(running: tuple[Service, Api]) -> None:
    svc, api = running
    async with api.session.get(api.base + "/readyz") as r:
        doc = await r.json()
        assert r.status == 200, doc
    assert set(doc["checks"]) == {"broker", "storage", "state"}
    assert all(c["ok"] for c in doc["checks"].values())
    assert svc.alerting is not None
    store, svc.alerting._store = svc.alerting._store, None
    try:
        async with api.session.get(api.base + "/readyz") as r:
            doc = await r.json()
            assert r.status == 503
        assert "alerting" in doc["checks"]["state"]["detail"]
    finally:
        svc.alerting._store = store
