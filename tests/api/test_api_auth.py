"""Tokens, roles, scopes and rate limits, as pure logic (the service tests cover the wiring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from api.auth import LOCAL, Authenticator, Principal, RateLimiter
from api.config import ApiConfig
from api.errors import ApiError
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
