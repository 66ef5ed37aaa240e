"""The served OpenAPI document against the running service, checked with Schemathesis.

The real service (collector and rules, with the real broker and InfluxDB) runs
in a thread of its own, since Schemathesis calls it synchronously. The schema
is loaded from the live ``/api/v1/openapi.json``; every operation but the
WebSocket upgrade is exercised with valid and invalid inputs, and every
response must be documented (status, content type, body schema), never a 5xx,
and invalid inputs must be refused with a 4xx.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import schemathesis
import urllib3
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema
from schemathesis.transport import requests as st_requests

from tests.helpers import FAST_OFFLINE, Publisher, connected, settings_for, shift_start, wait_until
from tests.services import Influx, Mosquitto

CITY = "321200"
GRID = "321202001001001"
SUPERVISOR = "contract-desk-1"
TOKENS = [
    {"name": "contract-desk", "token": SUPERVISOR, "role": "supervisor"},
    {"name": "contract-wall", "token": "contract-wall-1", "role": "viewer"},
]
AUTH = {"Authorization": f"Bearer {SUPERVISOR}"}
MAX_EXAMPLES = 25


class LiveService:
    """The service on its own event loop in a thread; ``base`` is its URL."""

    def __init__(self, mosquitto: Mosquitto, influx: Influx, db: str, data_dir: Path) -> None:
        self.settings = settings_for(
            mosquitto.url,
            influx.url,
            db,
            data_dir,
            patrols=FAST_OFFLINE,
            api={"tokens": TOKENS, "rate_limit": 100_000.0, "rate_burst": 100_000},
        )
        self.base = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-service", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with connected(self.settings, ["collector", "rules"]) as svc:
            self.base = f"http://127.0.0.1:{svc.http_port}"
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> LiveService:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def _get(base: str, path: str) -> Any:
    r = requests.get(base + path, headers=AUTH, timeout=10)
    r.raise_for_status()
    return r.json()


def _prepare(base: str, port: int) -> None:
    """An officer on shift (whose handheld then goes offline: an alert), and a silence."""
    now = time.time()
    shift = shift_start("dev-c1", "lead-c", GRID, ts=now)
    fix = {"ts": now, "lat": 32.45, "lon": 119.92, "acc": 5}
    with Publisher(port) as pub:
        pub.send_all(
            [
                (f"citywatch/{CITY}/officers/off-c1/shift", shift),
                (f"citywatch/{CITY}/devices/dev-c1/gps", fix),
            ]
        )
    wait_until(lambda: _get(base, "/api/v1/alerts")["total"] >= 1, what="an alert")
    wait_until(lambda: _get(base, "/api/v1/officers")["total"] >= 1, what="an officer")
    r = requests.post(
        base + "/api/v1/silences",
        headers=AUTH,
        json={
            "matchers": [{"name": "city", "value": CITY}],
            "ends_at": time.time() + 3600,
            "comment": "contract test",
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def live(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    with (
        influx.fresh_db() as db,
        LiveService(mosquitto, influx, db, tmp_path_factory.mktemp("contract")) as svc,
    ):
        _prepare(svc.base, mosquitto.port)
        yield svc


def _opened_connections(session: requests.Session) -> int:
    total = 0
    for adapter in session.adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            total += len(adapter.poolmanager.pools)
    return total


@pytest.fixture(scope="module")
def transport_compat() -> Iterator[None]:
    """Let Schemathesis's transport count pools when urllib3 is urllib3-future.

    grafana-client pulls in niquests, whose urllib3-future takes the ``urllib3``
    name; its pool container has no ``keys()``, which Schemathesis calls before
    every request to notice dropped keep-alive connections.
    """
    if hasattr(urllib3.PoolManager().pools, "keys"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st_requests, "_count_opened_connections", _opened_connections)
        yield


@pytest.fixture(scope="module")
def api_schema(live: LiveService, transport_compat: None) -> OpenApiSchema:
    schema = schemathesis.openapi.from_url(live.base + "/api/v1/openapi.json")
    schema.config.update(base_url=live.base, headers=AUTH)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )
    return schema


# The stream is a WebSocket upgrade: it is tested in test_api_service.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/v1/stream")


# Rules across fields or against the clock, which a JSON Schema cannot state: a schema-valid
# request may break one, and must then get a 400 saying which.
CROSS_FIELD = {
    "GET /api/v1/officers/{id}/track": re.compile(
        r"out of range|must be before 'to'|spans at most 7 days"
    ),
    "GET /api/v1/kpis": re.compile(r"must not be after 'to'|at most 24 months"),
    "POST /api/v1/silences": re.compile(
        r"out of range|must be in the future|ends_at must be after starts_at"
        r"|bad regular expression|a group followed by"
    ),
}


@schema.parametrize()
def test_every_operation_matches_its_document(case: schemathesis.Case[Any]) -> None:
    rule = CROSS_FIELD.get(case.operation.label)
    excluded = [positive_data_acceptance] if rule else []
    response = case.call_and_validate(excluded_checks=excluded)
    if rule is not None and response.status_code == 400 and _all_positive(case):
        message = response.json()["error"]["message"]
        assert rule.search(message), f"a schema-valid request refused: {message}"


def _all_positive(case: schemathesis.Case[Any]) -> bool:
    meta = case.meta
    return meta is not None and not any(c.mode.is_negative for c in meta.components.values())


def test_405_names_the_allowed_methods(live: LiveService) -> None:
    r = requests.request("TRACE", live.base + "/api/v1/alerts", headers=AUTH, timeout=10)
    assert r.status_code == 405
    assert r.headers.get("Allow") == "GET"


def test_the_document_is_served_publicly_and_names_every_operation(live: LiveService) -> None:
    r = requests.get(live.base + "/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = orjson.loads(r.content)
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/stream" in doc["paths"] and "/api/v1/alerts/{id}/ack" in doc["paths"]


SILENCE = {"matchers": [{"name": "grid", "value": GRID}], "comment": "施工　road works"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/kpis?from=0000-01", None, 400),  # was a 500 (year 0)
        ("GET", "/api/v1/alerts?status=", None, 400),
        ("GET", "/api/v1/alerts?status=firing,", None, 400),
        ("GET", "/api/v1/devices?offset=10000001", None, 400),
        ("POST", "/api/v1/silences", {**SILENCE, "starts_at": 0}, 400),  # was taken as now
        ("POST", "/api/v1/silences", {**SILENCE, "created_by": "x" * 65}, 400),  # was cut
        ("POST", "/api/v1/silences", {**SILENCE, "comment": "a\u202eb"}, 400),
        ("POST", "/api/v1/alerts/1/ack", {"by": ""}, 400),  # was taken as the token's name
        ("POST", "/api/v1/silences", SILENCE, 201),  # an ideographic space is text
    ],
)
def test_what_the_document_says_is_what_is_accepted(
    live: LiveService, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    if body is not None and path == "/api/v1/silences":
        body = {**body, "ends_at": time.time() + 600}
    r = requests.request(method, live.base + path, headers=AUTH, json=body, timeout=10)
    assert r.status_code == status, r.text
