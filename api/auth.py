"""Who is calling: bearer tokens with roles and scopes, local-only without tokens, rate limits.

Roles grow: ``viewer`` reads, ``supervisor`` also acknowledges and silences,
``admin`` also reads ``/metrics`` when it is not public. A token scoped to
cities and grid prefixes sees only alerts, officers, devices and cases there,
and may act only on those. Tokens are compared in constant time (hashes of
equal length, every token compared) and never logged; the token's name is.

Without tokens, "local" means: from a loopback address, with no header a proxy
adds (a proxy on this machine would make every caller look local), and naming
this machine in ``Host`` (a page of another site that had its name resolve to
127.0.0.1, DNS rebinding, would otherwise be same-origin with the API).

:class:`OriginPolicy` keeps other web pages from acting through a visitor's
browser (cross-site request forgery), which matters most without tokens, where
being on this machine is the only credential.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from citywatch.api.config import ROLES, ApiConfig, normal_origin
from citywatch.api.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a token's name, role and scope (empty scope: everything)."""

    name: str
    role: str
    cities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()

    def can(self, role: str) -> bool:
        """Whether this caller's role is ``role`` or one above it."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, city: str | None, grid: str | None) -> bool:
        """Whether something in ``city`` at ``grid`` is within this caller's scope."""
        if self.cities and city not in self.cities:
            return False
        if self.grids:
            return grid is not None and any(grid.startswith(p) for p in self.grids)
        return True

    def require(self, role: str) -> None:
        """403 unless this caller has ``role`` or one above it (the guard's role check)."""
        if not self.can(role):
            raise ApiError(403, f"token {self.name!r} has role {self.role}; this needs {role}")


LOCAL = Principal("local", "admin")
# Headers that proxies and CDNs add to say whom they forward for; besides these, every
# X-Forwarded-* header.
_PROXIED = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "x-proxyuser-ip",
        "x-original-host",
        "x-host",
    }
)
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
        # Names of this machine a local client may use besides loopback ones.
        names = [cfg.host_port[0], socket.gethostname()]
        names += [urlsplit(o).hostname or "" for o in cfg.origins]
        self._local_names = frozenset(n.lower().strip("[]") for n in names if n)

    def authenticate(self, request: web.Request) -> Principal:
        if self.open_locally:
            if not _is_loopback(request.remote):
                raise ApiError(403, "no api.tokens are configured: only local requests are served")
            forwarded = proxied(request.headers)
            if forwarded is not None:
                # A proxy on this machine would make every caller look local.
                raise ApiError(
                    403,
                    f"no api.tokens are configured: proxied requests ({forwarded}) are refused",
                )
            host = request.headers.get("Host")
            if host is not None and not self._names_this_machine(host):
                raise ApiError(
                    403,
                    f"no api.tokens are configured: Host {host[:100]!r} does not name this "
                    "machine (use localhost or 127.0.0.1, or list the name's origin in "
                    "api.allowed_origins)",
                )
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

    def _names_this_machine(self, host: str) -> bool:
        try:
            parts = urlsplit(f"//{host}")
            _ = parts.port  # a bad port raises ValueError
        except ValueError:
            return False
        name = parts.hostname
        if not name:
            return False
        if name == "localhost" or name.endswith(".localhost") or name in self._local_names:
            return True
        return _is_loopback(name)


def proxied(headers: Iterable[str]) -> str | None:
    """The first header that says a proxy forwarded the request, or None."""
    for name in headers:
        low = name.lower()
        if low in _PROXIED or low.startswith("x-forwarded-"):
            return name
    return None


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class OriginPolicy:
    """Which web pages may act, or open the stream, through a visitor's browser.

    Browsers send ``Origin`` on every cross-origin POST, PUT, PATCH, DELETE and on
    every WebSocket handshake, and ``Sec-Fetch-Site`` on every request. So such a
    request is served when ``Origin`` is the server's own (its host and port are the
    ``Host`` header's: the console) or one of ``api.allowed_origins``; when it has
    neither header it is not a browser's (curl, scripts, other services), and needs a
    token, or, without tokens, to come from this machine like any other. ``Origin:
    null`` (sandboxed frames, local files) and a cross-site ``Sec-Fetch-Site`` without
    an ``Origin`` are refused.
    """

    def __init__(self, cfg: ApiConfig) -> None:
        self.allowed = cfg.origins

    def check(self, request: web.BaseRequest) -> None:
        """Raise 403 if ``request`` acts or streams for a page it must not."""
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if request.method not in UNSAFE_METHODS and not upgrade:
            return
        what = "WebSocket" if upgrade else request.method
        origin = request.headers.get("Origin")
        if origin is None:
            site = request.headers.get("Sec-Fetch-Site")
            if site is None or site in ("same-origin", "none"):
                return
            raise ApiError(
                403, f"cross-site {what} refused (Sec-Fetch-Site: {site[:20]}, no Origin)"
            )
        normal = normal_origin(origin)
        if normal is not None and (normal in self.allowed or self._own(normal, request)):
            return
        raise ApiError(
            403,
            f"{what} from the web page at {origin[:100]!r} refused: only the console's own "
            "origin and api.allowed_origins may act or open the stream",
        )

    @staticmethod
    def _own(origin: str, request: web.BaseRequest) -> bool:
        host = request.headers.get("Host")
        if not host:
            return False
        scheme = origin.partition(":")[0]
        return normal_origin(f"{scheme}://{host}") == origin


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
