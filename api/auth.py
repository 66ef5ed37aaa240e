"""Who is calling: bearer tokens with roles and scopes, local-only without tokens, rate limits.

Roles grow: ``viewer`` reads, ``supervisor`` also acknowledges and silences,
``admin`` also reads ``/metrics`` when it is not public. A token scoped to
cities and grid prefixes sees only alerts, officers, devices and cases there,
and may act only on those. Tokens are compared in constant time (hashes of
equal length, every token compared) and never logged; the token's name is.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from api.config import ROLES, ApiConfig
from api.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a token's name, role and scope (empty scope: everything)."""

    name: str
    role: str
    cities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, city: str | None, grid: str | None) -> bool:
        """Whether something in ``city`` at ``grid`` is within this caller's scope."""
        if self.cities and city not in self.cities:
            return False
        if self.grids:
            return grid is not None and any(grid.startswith(p) for p in self.grids)
        return True

    def require(self, role: str) -> None:
        if not self.can(role):
            raise ApiError(403, f"token {self.name!r} has role {self.role}; this needs {role}")


LOCAL = Principal("local", "admin")
_PROXIED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Authenticator:
    """Maps a bearer token to its :class:`Principal`, or refuses."""

    def __init__(self, cfg: ApiConfig) -> None:
        self._tokens = [
            (_digest(t.secret()), Principal(t.name, t.role, t.cities, t.grids)) for t in cfg.tokens
        ]
        self.open_locally = not self._tokens

    def authenticate(self, request: web.Request) -> Principal:
        if self.open_locally:
            if not _is_loopback(request.remote):
                raise ApiError(403, "no api.tokens are configured: only local requests are served")
            if any(h in request.headers for h in _PROXIED):
                # A proxy on this machine would make every caller look local.
                raise ApiError(403, "no api.tokens are configured: proxied requests are refused")
            return LOCAL
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        digest = _digest(given.strip())
        found: Principal | None = None
        for known, principal in self._tokens:  # every one, so timing says nothing
            if hmac.compare_digest(digest, known):
                found = principal
        if found is None:
            raise ApiError(401, "unknown token")
        return found


def _is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """A token bucket per caller: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> float:
        """0 if allowed now, else seconds until the next request would be."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def principal(request: web.Request) -> Principal:
    """The caller of an authenticated request."""
    try:
        return request[PRINCIPAL_KEY]
    except KeyError:
        raise ApiError(401, "not authenticated") from None
