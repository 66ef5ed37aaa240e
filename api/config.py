"""Settings of the HTTP server: where it listens, who may call it, and its limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from citywatch.config import ConfigError, duration, size, split_host_port

ROLES = ("viewer", "supervisor", "admin")
_CITY = re.compile(r"[0-9]{6}").fullmatch
_GRID_PREFIX = re.compile(r"[0-9]{1,15}").fullmatch
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}").fullmatch


@dataclass(frozen=True)
class TokenConfig:
    """One bearer token: its name (logged, never the token), role and scope.

    ``cities`` and ``grids`` (prefixes of grid codes) scope what the token sees
    and may act on; empty means everything. A token comes from ``token`` or from
    ``token_file`` (read at start-up, surrounding whitespace removed).
    """

    name: str = ""
    token: str | None = None
    token_file: str | None = None
    role: str = "viewer"
    cities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()

    def validate(self, prefix: str) -> None:
        if not self.name or not _NAME(self.name):
            raise ConfigError(f"{prefix}.name", "must be 1-64 of letters, digits and _.:@-")
        if (self.token is None) == (self.token_file is None):
            raise ConfigError(f"{prefix}.token", "give exactly one of token and token_file")
        if self.role not in ROLES:
            raise ConfigError(f"{prefix}.role", f"must be one of {', '.join(ROLES)}")
        for i, c in enumerate(self.cities):
            if not _CITY(c):
                raise ConfigError(f"{prefix}.cities[{i}]", "must be a 6-digit city code")
        for i, g in enumerate(self.grids):
            if not _GRID_PREFIX(g):
                raise ConfigError(f"{prefix}.grids[{i}]", "must be a prefix of grid codes")
        secret = self.secret(prefix)
        if len(secret) < 8:
            raise ConfigError(f"{prefix}.token", "must be at least 8 characters")

    def secret(self, prefix: str = "api.tokens[]") -> str:
        """The token itself (from ``token_file`` if given)."""
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        try:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{prefix}.token_file", f"cannot read: {exc.strerror}") from None


@dataclass(frozen=True)
class ApiConfig:
    """``api:`` — where the HTTP server listens, its tokens and its limits."""

    addr: str = "127.0.0.1:8080"
    tokens: tuple[TokenConfig, ...] = ()
    metrics_public: bool | None = None
    """Unset: public without tokens (local-only), an admin token's with them."""
    allowed_origins: tuple[str, ...] = ()
    """Web origins besides the console's own that may act and stream from a browser."""
    tiles_url: str | None = None
    max_body: int = size(64 * 1024)
    rate_limit: float = 50.0
    rate_burst: int = 200
    page_max: int = 1000
    stream_backlog: int = 10_000
    header_timeout: float = duration(10.0)
    """The request line and headers must all arrive within this."""
    body_timeout: float = duration(30.0)
    """A declared body must all arrive within this of its headers."""
    idle_timeout: float = duration(75.0)
    """A kept-alive connection with no request is closed after this."""
    max_connections: int = 512

    def validate(self, prefix: str) -> None:
        p = f"{prefix}." if prefix else ""
        split_host_port(self.addr, f"{p}addr", 8080)
        names = [t.name for t in self.tokens]
        if len(names) != len(set(names)):
            raise ConfigError(f"{p}tokens", "token names must be unique")
        secrets = [t.secret(f"{p}tokens[{i}]") for i, t in enumerate(self.tokens)]
        if len(secrets) != len(set(secrets)):
            raise ConfigError(f"{p}tokens", "two tokens have the same value")
        if self.tiles_url is not None:
            parts = urlsplit(self.tiles_url)
            if parts.scheme not in ("http", "https", "") or not all(
                k in self.tiles_url for k in ("{z}", "{x}", "{y}")
            ):
                raise ConfigError(
                    f"{p}tiles_url", "must be an http(s) or relative URL with {z}, {x} and {y}"
                )
        if not 1024 <= self.max_body <= 16 * 1024 * 1024:
            raise ConfigError(f"{p}max_body", "must be between 1KiB and 16MiB")
        if self.rate_limit <= 0 or self.rate_burst < 1:
            raise ConfigError(f"{p}rate_limit", "rate_limit and rate_burst must be positive")
        if not 1000 <= self.page_max <= 100_000:
            raise ConfigError(f"{p}page_max", "must be between 1000 and 100000")
        if not 100 <= self.stream_backlog <= 1_000_000:
            raise ConfigError(f"{p}stream_backlog", "must be between 100 and 1000000")
        for name, most in (("header_timeout", 600), ("body_timeout", 3600), ("idle_timeout", 3600)):
            if not 0 < getattr(self, name) <= most:
                raise ConfigError(f"{p}{name}", f"must be more than 0s and at most {most}s")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ConfigError(f"{p}max_connections", "must be between 1 and 1000000")
        for i, origin in enumerate(self.allowed_origins):
            if normal_origin(origin) is None:
                raise ConfigError(
                    f"{p}allowed_origins[{i}]",
                    f"must be scheme://host[:port] with http or https and nothing after, "
                    f"got {origin!r}",
                )

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.addr, "api.addr", 8080)

    @property
    def metrics_open(self) -> bool:
        """Whether ``/metrics`` needs no token: as set, else only when there are no tokens."""
        return not self.tokens if self.metrics_public is None else self.metrics_public

    @property
    def origins(self) -> frozenset[str]:
        """``allowed_origins``, normalised like :func:`normal_origin`."""
        return frozenset(o for o in map(normal_origin, self.allowed_origins) if o is not None)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin.

    Browsers send the ``Origin`` header in this form; ``null`` (sandboxed frames, files)
    and anything with a path, query, fragment or user is not an origin to compare.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "*" in host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
