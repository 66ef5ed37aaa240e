"""The route table is the API: every route has every part, and the guard enforces each.

Every test here enumerates :data:`api.routes.ROUTES`: a route added without a role,
a handler whose signature matches its parameters, typed parameter kinds, its OpenAPI
operation or its row in docs/api.md fails, and so does one the guard would serve to a
caller without its role or outside its scope.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client import CollectorRegistry

from citywatch.api.auth import Principal
from citywatch.api.config import ROLES, ApiConfig
from citywatch.api.errors import ApiError
from citywatch.api.guard import Endpoint
from citywatch.api.openapi import document
from citywatch.api.params import Kind, Param
from citywatch.api.routes import ROUTES, TOKEN, Route
from citywatch.api.scope import Items, PerCity, Pins
from citywatch.api.server import make_app
from citywatch.config import load_section

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
TOKENS = {role: f"{role}-token-1" for role in ROLES}
SCOPED = "scoped-token-1"  # a supervisor scoped to a city and grid the examples are not in
LABELS = [r.label for r in ROUTES]


def _cfg() -> ApiConfig:
    tokens: list[dict[str, Any]] = [
        {"name": role, "token": token, "role": role} for role, token in TOKENS.items()
    ]
    tokens.append(
        {
            "name": "scoped",
            "token": SCOPED,
            "role": "supervisor",
            "cities": ["110100"],
            "grids": ["110101"],
        }
    )
    return load_section(
        ApiConfig, {"tokens": tokens, "rate_limit": 100_000.0, "rate_burst": 100_000}, "api"
    )


def _wire(p: Param[Any]) -> Any:
    return p.kind.example


def _request(r: Route) -> tuple[str, dict[str, str], Any]:
    """A call of ``r`` with every parameter given a valid value: path, query, body."""
    path = r.path
    query: dict[str, str] = {}
    body: dict[str, Any] = {}
    for p in r.params:
        if p.where == "path":
            path = path.replace(f"{{{p.name}}}", str(_wire(p)))
        elif p.where == "query":
            query[p.name] = str(_wire(p))
        else:
            body[p.name] = _wire(p)
    return path, query, body if r.body is not None else None


# -- every route has every part ------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
def test_every_route_has_every_part(route: Route) -> None:
    assert route.role in ROLES
    assert isinstance(route.scope, Items | PerCity | Pins) and route.scope.name
    assert route.summary and route.response
    assert inspect.iscoroutinefunction(route.handler), route.handler
    for p in route.params:
        assert isinstance(p.kind, Kind) and p.description, p
        schema = p.kind.schema()
        assert "type" in schema or "anyOf" in schema, p
        assert p.py_type is not object, p
        # The kind's example passes its own check, as the type the handler gets.
        value = p.kind.parse(_wire(p), p.what)
        expected = typing.get_origin(p.kind.py_type) or p.kind.py_type
        assert isinstance(value, expected), (p, value)


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
def test_every_handler_takes_its_routes_parameters_as_typed_keywords(route: Route) -> None:
    sig = inspect.signature(route.handler)
    hints = typing.get_type_hints(route.handler)
    positional = [
        n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert positional == ["request", "who"], route.label
    assert hints["request"] is web.Request and hints["who"] is Principal
    keywords = {n: p for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(keywords) == {p.arg for p in route.params}, route.label
    for p in route.params:
        assert keywords[p.arg].default is inspect.Parameter.empty, (route.label, p.arg)
        assert hints[p.arg] == p.py_type, (route.label, p.arg, hints[p.arg], p.py_type)


def test_the_document_has_every_route_and_nothing_else() -> None:
    doc = document("test")
    operations = {
        f"{method.upper()} {path}": op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert set(operations) == set(LABELS)
    for r in ROUTES:
        op = operations[r.label]
        assert f"`{r.role}`" in op["description"] and r.scope.doc in op["description"]
        named = [(q["in"], q["name"]) for q in op["parameters"]]
        expected = [(p.where, p.name) for p in r.params if p.where != "body"]
        assert named == expected + ([("query", TOKEN.name)] if r.websocket else []), r.label
        if r.body is None:
            assert "requestBody" not in op
            continue
        body = doc["components"]["schemas"][r.body]
        assert set(body["properties"]) == {p.name for p in r.body_params}
        assert body.get("required", []) == [p.name for p in r.body_params if p.required]


def test_the_server_serves_the_table_and_nothing_else() -> None:
    app = make_app(CollectorRegistry(), {})
    served = {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }
    assert served == set(LABELS) | {"GET /api/v1/openapi.json"}


def _docs_rows() -> dict[str, list[str]]:
    """The rows of the table in docs/api.md's section "Endpoints", by operation."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("\n## Endpoints\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `((?:GET|POST|PUT|PATCH|DELETE) /api/v1/[^`]*)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
def test_every_route_has_its_row_in_the_docs(route: Route) -> None:
    rows = _docs_rows()
    assert route.label in rows, f"docs/api.md has no row for {route.label}"
    role, scope, query, body = rows[route.label]
    assert _names(role) == [route.role]
    assert scope == route.scope.name
    assert _names(query) == [p.name for p in route.params if p.where == "query"] + (
        [TOKEN.name] if route.websocket else []
    )
    assert _names(body) == [p.name for p in route.body_params]


def test_the_docs_have_no_row_for_a_route_not_in_the_table() -> None:
    assert set(_docs_rows()) == set(LABELS)


# -- the guard enforces every route's line ---------------------------------------------


Calls = list[tuple[str, Principal, dict[str, Any]]]


def _stubbed(calls: Calls) -> tuple[Route, ...]:
    """The table with each handler replaced by one that records its call."""

    def stub(label: str) -> Any:
        async def handler(request: web.Request, who: Principal, **args: Any) -> web.Response:
            calls.append((label, who, args))
            return web.json_response({"ok": True})

        return handler

    return tuple(dataclasses.replace(r, handler=stub(r.label)) for r in ROUTES)


@pytest.fixture
async def stubbed() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Calls]]:
    calls: Calls = []
    app = make_app(CollectorRegistry(), {}, _cfg(), routes=_stubbed(calls))
    async with TestClient(TestServer(app)) as client:
        yield client, calls


async def _call(
    client: TestClient[web.Request, web.Application], r: Route, token: str | None
) -> tuple[int, Any]:
    path, query, body = _request(r)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    kw: dict[str, Any] = {"headers": headers}
    if body is not None:
        kw["data"] = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    async with client.request(r.method, f"{path}?{urlencode(query)}", **kw) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
async def test_the_guard_refuses_every_caller_without_the_routes_role(
    route: Route, stubbed: tuple[TestClient[web.Request, web.Application], Calls]
) -> None:
    client, calls = stubbed
    status, doc = await _call(client, route, None)
    assert status == 401, doc
    below = ROLES[: ROLES.index(route.role)]
    for role in below:
        status, doc = await _call(client, route, TOKENS[role])
        assert status == 403, (role, doc)
        assert f"this needs {route.role}" in doc["error"]["message"]
    assert calls == [], "a handler ran for a caller without the role"
    # The role itself and those above it reach the handler, with every parameter parsed.
    for role in ROLES[ROLES.index(route.role) :]:
        status, doc = await _call(client, route, TOKENS[role])
        assert status == 200, (role, doc)
    assert [label for label, _, _ in calls] == [route.label] * (len(ROLES) - len(below))
    _, who, args = calls[-1]
    assert who.role == ROLES[-1]
    assert set(args) == {p.arg for p in route.params}
    for p in route.params:
        expected = typing.get_origin(p.kind.py_type) or p.kind.py_type
        assert isinstance(args[p.arg], expected), (p.name, args[p.arg])


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
async def test_the_guard_applies_every_routes_scope_rule(
    route: Route, stubbed: tuple[TestClient[web.Request, web.Application], Calls]
) -> None:
    # The examples pin nothing in the scoped token's city and grid.
    client, calls = stubbed
    status, doc = await _call(client, route, SCOPED)
    if isinstance(route.scope, Items):
        # Judged item by item, by the handler, with the caller it is given.
        assert status == 200, doc
        assert calls[-1][1].cities == ("110100",)
    else:
        assert status == 403, doc
        assert "scoped" in doc["error"]["message"] or "must pin" in doc["error"]["message"]
        assert calls == []


@pytest.mark.parametrize("route", ROUTES, ids=LABELS)
async def test_the_guard_checks_every_query_parameter(
    route: Route, stubbed: tuple[TestClient[web.Request, web.Application], Calls]
) -> None:
    client, calls = stubbed
    path, query, body = _request(route)
    headers = {"Authorization": f"Bearer {TOKENS['admin']}", "Content-Type": "application/json"}
    for p in (p for p in route.params if p.where == "query"):
        rest = [(k, v) for k, v in query.items() if k != p.name]
        for given, words in (
            ([(p.name, "")], "is empty"),
            ([(p.name, query[p.name])] * 2, "given 2 times"),
        ):
            async with client.request(
                route.method,
                f"{path}?{urlencode(given + rest)}",
                headers=headers,
                data=None if body is None else orjson.dumps(body),
            ) as resp:
                doc = await resp.json()
                assert resp.status == 400, (p.name, doc)
                assert words in doc["error"]["message"] and repr(p.name) in doc["error"]["message"]
    assert calls == []


async def test_an_endpoint_reached_without_the_guard_refuses() -> None:
    calls: Calls = []
    for route in _stubbed(calls):
        with pytest.raises(ApiError) as info:
            await Endpoint(route).serve(make_mocked_request(route.method, route.path))
        assert info.value.status == 401
    assert calls == []


def test_a_route_missing_a_part_is_refused_at_import() -> None:
    alerts = next(r for r in ROUTES if r.label == "GET /api/v1/alerts/{id}")
    for change in (
        {"role": "god"},
        {"params": ()},  # the path's {id} undeclared
        {"body": "Ack"},  # a body without fields
        {"path": "/alerts/{id}"},
    ):
        with pytest.raises(ValueError):
            dataclasses.replace(alerts, **change)
