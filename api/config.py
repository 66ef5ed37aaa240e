"""Settings of the HTTP server."""

from __future__ import annotations

from dataclasses import dataclass

from citywatch.config import split_host_port


@dataclass(frozen=True)
class ApiConfig:
    """``api:`` — where the HTTP server listens."""

    addr: str = "127.0.0.1:8080"

    def validate(self, prefix: str) -> None:
        split_host_port(self.addr, f"{prefix}.addr", 8080)

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.addr, "api.addr", 8080)
