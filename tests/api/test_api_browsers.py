"""Other web pages against the real service in local-only mode (no tokens), over real sockets.

Without tokens, being on this machine is the only credential, and a browser on this
machine carries it to every page it opens. A page of another site must not be able
to act (acknowledge, silence) or to read the stream through it, nor to pass for
local through a proxy or under its own name resolved to 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from citywatch.app.service import Service
from tests.api.service import Api, api_service
from tests.api.test_api_service import two_alerts
from tests.services import Influx, Mosquitto

EVIL = "http://evil.example"
FRIEND = "https://console.example.gov.cn"
SILENCE = {"matchers": [{"name": "grid", "value": "321203.*", "op": "=~"}], "comment": "施工"}


@pytest.fixture
async def local(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, Api]]:
    async with api_service(
        mosquitto, influx, influx_db, tmp_path, allowed_origins=[FRIEND]
    ) as running:
        assert not running[0].settings.api.tokens
        yield running


async def test_other_web_pages_cannot_act_without_tokens(
    local: tuple[Service, Api], mosquitto: Mosquitto
) -> None:
    svc, api = local
    ids = await two_alerts(svc, api, mosquitto)
    alerting = svc.alerting
    assert alerting is not None
    ack = f"/api/v1/alerts/{ids['off-7']}/ack"
    own = api.base  # the console's origin: the Host it is served under

    async def post(path: str, headers: dict[str, str], **kw: Any) -> tuple[int, Any]:
        return await api.call("POST", path, token=None, headers=headers, **kw)

    # A page of another site posting a form, text, or nothing: refused before anything.
    for headers, kw in (
        ({"Origin": EVIL}, {}),
        ({"Origin": EVIL, "Content-Type": "text/plain"}, {"data": b'{"note": "x"}'}),
        ({"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"}, {"data": b"a=b"}),
        ({"Origin": "null", "Content-Type": "text/plain"}, {"data": b"{}"}),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, {"data": b"{}"}),
        ({"Origin": "http://127.0.0.1:1"}, {"json": {}}),  # another local port: another site
    ):
        status, doc = await post(ack, headers, **kw)
        assert status == 403, (headers, doc)
        assert "refused" in doc["error"]["message"]
    # The body the operation declares is required: no body, or text, never acts.
    status, doc = await post(ack, {})
    assert status == 415 and "JSON body is required" in doc["error"]["message"]
    status, doc = await post(ack, {"Origin": own, "Content-Type": "text/plain"}, data=b"{}")
    assert status == 415
    status, doc = await post(ack, {"Origin": own, "Content-Type": "application/json"}, data=b"")
    assert status == 400
    assert alerting.by_id[ids["off-7"]].status == "firing"
    # The console's own page, and a listed origin, may.
    status, doc = await post(ack, {"Origin": own, "Sec-Fetch-Site": "same-origin"}, json={})
    assert status == 200 and doc["status"] == "acknowledged"
    friend_ack = f"/api/v1/alerts/{ids['off-8']}/ack"
    friendly = {"Origin": FRIEND, "Sec-Fetch-Site": "cross-site"}
    status, doc = await post(friend_ack, friendly, json={})
    assert status == 200 and doc["status"] == "acknowledged"
    # Silences likewise, creating and ending.
    body = {**SILENCE, "ends_at": time.time() + 3600}
    assert (await post("/api/v1/silences", {"Origin": EVIL}, json=body))[0] == 403
    assert len(alerting.silences) == 0
    status, doc = await post("/api/v1/silences", {"Origin": own}, json=body)
    assert status == 201
    status, _ = await api.call(
        "DELETE", f"/api/v1/silences/{doc['id']}", token=None, headers={"Origin": EVIL}
    )
    assert status == 403
    assert alerting.silences[doc["id"]].active(alerting.clock.now())
    # Reading is the same origin's business alone (browsers do not let pages read
    # another site's answers), and local callers that are not browsers are served.
    assert (await api.call("GET", "/api/v1/alerts", token=None))[0] == 200
    async with api.session.get(api.base + "/metrics") as r:
        assert r.status == 200  # no tokens: /metrics is public by default


async def test_other_web_pages_cannot_open_the_stream_without_tokens(
    local: tuple[Service, Api],
) -> None:
    _, api = local
    url = api.base.replace("http", "ws") + "/api/v1/stream"
    for origin in (EVIL, "null", "http://localhost:3000"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            async with api.session.ws_connect(url, origin=origin):
                pass
        assert info.value.status == 403, origin
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with api.session.ws_connect(url, headers={"Sec-Fetch-Site": "cross-site"}):
            pass
    assert info.value.status == 403
    # The console's page, a listed origin, and a local program (no Origin) get the stream.
    for headers in ({"Origin": api.base}, {"Origin": FRIEND}, {}):
        async with api.session.ws_connect(url, headers=headers) as ws:
            hello = orjson.loads((await ws.receive(timeout=10)).data)
            assert hello["type"] == "hello" and hello["principal"] == "local"


async def test_proxied_or_misnamed_requests_are_not_local(local: tuple[Service, Api]) -> None:
    _, api = local
    for name, value in (
        ("Forwarded", "for=10.0.0.9"),
        ("X-Forwarded-For", "10.0.0.9"),
        ("X-Forwarded-Host", "citywatch.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "10.0.0.9"),
        ("X-Client-IP", "10.0.0.9"),
        ("True-Client-IP", "10.0.0.9"),
        ("CF-Connecting-IP", "10.0.0.9"),
        ("X-Cluster-Client-IP", "10.0.0.9"),
        ("Via", "1.1 proxy"),
    ):
        status, doc = await api.call("GET", "/api/v1/alerts", token=None, headers={name: value})
        assert status == 403 and "proxied" in doc["error"]["message"], name
    # A page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) is same-origin
    # with the API in the browser's eyes: the Host it sends does not name this machine.
    rebound = f"evil.example:{api.base.rsplit(':', 1)[1]}"
    status, doc = await api.call("GET", "/api/v1/alerts", token=None, headers={"Host": rebound})
    assert status == 403 and "Host" in doc["error"]["message"]
    for host in ("localhost", "127.0.0.1", "console.example.gov.cn"):
        status, _ = await api.call("GET", "/api/v1/alerts", token=None, headers={"Host": host})
        assert status == 200, host
