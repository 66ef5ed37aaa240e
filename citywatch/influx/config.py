"""Settings of the InfluxDB writer and its spool."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from citywatch.config import ConfigError, duration, size


@dataclass(frozen=True)
class InfluxConfig:
    """``influx:`` — where points go. With no ``url`` every batch waits in the spool."""

    url: str = ""
    db: str = "citywatch"
    token: str | None = None
    org: str | None = None
    bucket: str | None = None
    timeout: float = duration(10.0)
    batch_size: int = 5000
    flush_interval: float = duration(1.0)
    max_body: int = size(8 * 1024**2)
    """Most bytes of line protocol (before gzip) in one write request; InfluxDB 1.x refuses
    bodies over its ``max-body-size`` (25 MB by default) with 413."""
    gzip: bool = True
    create_db: bool = True
    retry_max: float = duration(30.0)

    def validate(self, prefix: str) -> None:
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{prefix}.url", f"expected http://host:port, got {self.url!r}")
        if not self.db and not self.bucket:
            raise ConfigError(f"{prefix}.db", "must not be empty")
        if self.v2 and not (self.org and self.bucket and self.token):
            raise ConfigError(
                f"{prefix}.bucket", "InfluxDB 2.x/3.x needs org, bucket and token together"
            )
        if not 1 <= self.batch_size <= 100_000:
            raise ConfigError(f"{prefix}.batch_size", "must be between 1 and 100000")
        if not 1024 <= self.max_body <= 1024**3:
            raise ConfigError(f"{prefix}.max_body", "must be between 1KiB and 1GiB")
        if self.flush_interval <= 0:
            raise ConfigError(f"{prefix}.flush_interval", "must be positive")

    @property
    def v2(self) -> bool:
        """InfluxDB 2.x/3.x (``/api/v2/write`` with org, bucket and token)."""
        return bool(self.token or self.bucket)


@dataclass(frozen=True)
class SpoolConfig:
    """``spool:`` — the on-disk queue used while InfluxDB is down or not configured."""

    max_bytes: int = size(1024**3)
    fsync: bool = True
