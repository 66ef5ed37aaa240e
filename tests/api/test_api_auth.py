"""Tokens, roles, scopes and rate limits, as pure logic (the service tests cover the wiring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from citywatch.api.auth import LOCAL, Authenticator, Principal, RateLimiter
from citywatch.api.config import ApiConfig
from citywatch.api.errors import ApiError
from citywatch.config import ConfigError, load_section


def cfg(**raw: object) -> ApiConfig:
    return load_section(ApiConfig, raw, "api")


def request(auth: str | None = None, remote: str = "127.0.0.1") -> object:
    headers = {"Authorization": auth} if auth else {}
    req = make_mocked_request("GET", "/api/v1/alerts", headers=headers)
    return req.clone(remote=remote)


def test_without_tokens_only_this_machine_is_served() -> None:
    a = Authenticator(cfg())
    assert a.open_locally
    assert a.authenticate(request(remote="127.0.0.1")) is LOCAL  # type: ignore[arg-type]
    assert a.authenticate(request(remote="::1")) is LOCAL  # type: ignore[arg-type]
    with pytest.raises(ApiError) as info:
        a.authenticate(request(remote="10.0.0.7"))  # type: ignore[arg-type]
    assert info.value.status == 403 and "only local" in info.value.message


def test_bearer_tokens_map_to_their_principal(tmp_path: Path) -> None:
    secret = tmp_path / "duty"
    secret.write_text("duty-from-file\n")
    a = Authenticator(
        cfg(
            tokens=[
                {"name": "duty", "token_file": str(secret), "role": "supervisor"},
                {
                    "name": "lead-7",
                    "token": "lead7-secret",
                    "cities": ["321200"],
                    "grids": ["321202"],
                },
            ]
        )
    )
    p = a.authenticate(request("Bearer duty-from-file", remote="10.1.1.1"))  # type: ignore[arg-type]
    assert p.name == "duty" and p.can("supervisor") and not p.can("admin")
    lead = a.authenticate(request("bearer lead7-secret"))  # type: ignore[arg-type]
    assert lead.role == "viewer" and lead.sees("321200", "321202001001001")
    assert not lead.sees("321200", "321203001001001") and not lead.sees("320100", "321202001")
    assert not lead.sees("321200", None)
    for bad in (None, "Basic abc", "Bearer ", "Bearer nope"):
        with pytest.raises(ApiError) as info:
            a.authenticate(request(bad))  # type: ignore[arg-type]
        assert info.value.status == 401


def test_roles_grow() -> None:
    viewer = Principal("w", "viewer")
    with pytest.raises(ApiError) as info:
        viewer.require("supervisor")
    assert info.value.status == 403
    Principal("a", "admin").require("supervisor")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"tokens": [{"name": "x", "role": "viewer"}]}, "api.tokens[0].token"),
        (
            {"tokens": [{"name": "x", "token": "12345678", "token_file": "/x"}]},
            "api.tokens[0].token",
        ),
        ({"tokens": [{"name": "x", "token": "short"}]}, "api.tokens[0].token"),
        ({"tokens": [{"name": "x", "token": "12345678", "role": "god"}]}, "api.tokens[0].role"),
        (
            {"tokens": [{"name": "x", "token": "12345678", "cities": ["32"]}]},
            "api.tokens[0].cities[0]",
        ),
        (
            {"tokens": [{"name": "x", "token_file": "/nonexistent/file"}]},
            "api.tokens[0].token_file",
        ),
        ({"tokens": [{"name": "a b", "token": "12345678"}]}, "api.tokens[0].name"),
        (
            {"tokens": [{"name": "x", "token": "12345678"}, {"name": "x", "token": "87654321"}]},
            "api.tokens",
        ),
        ({"tiles_url": "https://tiles/x.png"}, "api.tiles_url"),
        ({"max_body": "1B"}, "api.max_body"),
        ({"header_timeout": 0}, "api.header_timeout"),
        ({"body_timeout": "2h"}, "api.body_timeout"),
        ({"idle_timeout": "soon"}, "api.idle_timeout"),
        ({"max_connections": 0}, "api.max_connections"),
        ({"metrics_public": "yes"}, "api.metrics_public"),
        ({"allowed_origins": ["*"]}, "api.allowed_origins[0]"),
        ({"allowed_origins": ["https://ok.example", "null"]}, "api.allowed_origins[1]"),
        ({"allowed_origins": ["https://console.example/app"]}, "api.allowed_origins[0]"),
        ({"allowed_origins": ["ftp://console.example"]}, "api.allowed_origins[0]"),
    ],
)
def test_bad_api_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**raw)
    assert info.value.key == key


def test_rate_limit_per_caller() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(0.5)
    assert limiter.allow("b") == 0.0  # another token has its own bucket
    now[0] += 0.5
    assert limiter.allow("a") == 0.0


def test_local_only_refuses_proxied_requests() -> None:
    a = Authenticator(cfg())
    req = make_mocked_request("GET", "/api/v1/alerts", headers={"X-Forwarded-For": "10.0.0.9"})
    with pytest.raises(ApiError) as info:
        a.authenticate(req.clone(remote="127.0.0.1"))
    assert info.value.status == 403 and "proxied" in info.value.message


async def test_guessing_tokens_is_rate_limited_per_address() -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from citywatch.api.server import make_app

    app = make_app(
        CollectorRegistry(),
        {},
        cfg(tokens=[{"name": "duty", "token": "duty-secret"}], rate_burst=3, rate_limit=0.01),
    )
    async with TestClient(TestServer(app)) as client:
        codes = []
        for _ in range(5):
            r = await client.get("/api/v1/alerts", headers={"Authorization": "Bearer guess"})
            codes.append(r.status)
        assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
        assert int(r.headers["Retry-After"]) >= 1


def test_broker_address_never_shows_its_password() -> None:
    from citywatch.config import parse_mqtt_url

    b = parse_mqtt_url("mqtt://citywatch:TopSecret@broker:1883")
    assert "TopSecret" not in str(b) and str(b) == "mqtt://citywatch@broker:1883"


def test_track_spans_follow_the_officers_own_shifts() -> None:
    from citywatch.api.views.fleet import _spans

    rows = [[100, "dev-1", "start"], [200, None, "end"], [300, "dev-2", "start"]]
    assert _spans(rows, "dev-2", 0, 1000) == [("dev-1", 100, 200), ("dev-2", 300, 1000)]
    # A device handed over after the shift is not followed past its end.
    assert _spans([[100, "dev-1", "start"], [200, None, "end"]], None, 150, 1000) == [
        ("dev-1", 150, 200)
    ]
    assert _spans([], "dev-9", 0, 50) == [("dev-9", 0, 50)]


def test_origins_compare_as_browsers_write_them() -> None:
    from citywatch.api.config import normal_origin

    assert normal_origin("HTTPS://Console.Example.GOV.cn:443") == "https://console.example.gov.cn"
    assert normal_origin("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert normal_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("null", "", "file://", "http://a@b", "http://x:99999", "http://x?y"):
        assert normal_origin(bad) is None, bad


async def test_metrics_are_public_by_default_only_without_tokens() -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from citywatch.api.server import make_app

    tokens = [{"name": "root", "token": "root-admin-1", "role": "admin"}]
    assert cfg().metrics_open and not cfg(metrics_public=False).metrics_open
    assert not cfg(tokens=tokens).metrics_open
    assert cfg(tokens=tokens, metrics_public=True).metrics_open
    for settings, status in (
        (cfg(tokens=tokens), 401),
        (cfg(tokens=tokens, metrics_public=True), 200),
        (cfg(), 200),
    ):
        async with TestClient(TestServer(make_app(CollectorRegistry(), {}, settings))) as client:
            assert (await client.get("/metrics")).status == status


@pytest.mark.parametrize(
    ("method", "headers", "allowed"),
    [
        ("GET", {"Origin": "http://evil.example"}, True),  # reading: the browser keeps it
        ("POST", {}, True),  # not a browser: curl, a script
        ("POST", {"Sec-Fetch-Site": "same-origin"}, True),
        ("POST", {"Sec-Fetch-Site": "none"}, True),
        ("POST", {"Sec-Fetch-Site": "same-site"}, False),  # another port of this host
        ("POST", {"Sec-Fetch-Site": "cross-site"}, False),
        ("POST", {"Origin": "http://citywatch.example:8080"}, True),
        ("DELETE", {"Origin": "HTTP://CityWatch.example:8080"}, True),
        ("POST", {"Origin": "https://citywatch.example:8080"}, True),  # TLS ended by a proxy
        ("POST", {"Origin": "http://citywatch.example:8081"}, False),
        ("POST", {"Origin": "http://citywatch.example"}, False),
        ("PUT", {"Origin": "null"}, False),
        ("PATCH", {"Origin": "http://evil.example"}, False),
        ("POST", {"Origin": "https://friend.example"}, True),
        ("POST", {"Origin": "https://friend.example:443", "Sec-Fetch-Site": "cross-site"}, True),
        ("GET", {"Upgrade": "websocket", "Origin": "http://evil.example"}, False),
        ("GET", {"Upgrade": "websocket", "Sec-Fetch-Site": "cross-site"}, False),
        ("GET", {"Upgrade": "websocket", "Origin": "http://citywatch.example:8080"}, True),
        ("GET", {"Upgrade": "websocket"}, True),
    ],
)
def test_other_sites_pages_may_not_act(method: str, headers: dict[str, str], allowed: bool) -> None:
    from citywatch.api.auth import OriginPolicy

    policy = OriginPolicy(cfg(allowed_origins=["https://friend.example"]))
    req = make_mocked_request(
        method, "/api/v1/alerts/1/ack", headers={"Host": "citywatch.example:8080", **headers}
    )
    if allowed:
        policy.check(req)
        return
    with pytest.raises(ApiError) as info:
        policy.check(req)
    assert info.value.status == 403 and "refused" in info.value.message
