"""Settings of the MQTT consumer and of message validation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from citywatch.config import BrokerAddress, ConfigError, duration, parse_mqtt_url, size
from citywatch.topics import DEFAULT_OWNTRACKS_ROOT, DEFAULT_ROOT

_CITY = re.compile(r"[0-9]{6}")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class MqttConfig:
    """``mqtt:`` — how the collector connects and subscribes."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "citywatch-collector"
    topic_root: str = DEFAULT_ROOT
    owntracks_root: str = DEFAULT_OWNTRACKS_ROOT
    keepalive: float = duration(30.0)
    connect_timeout: float = duration(5.0)
    reconnect_max: float = duration(30.0)
    max_unacked: int = 20000
    tls_ca: str | None = None
    tls_insecure: bool = False
    share_group: str = ""
    """With a name, several processes share the traffic (``$share/<name>/...``)."""
    cities: tuple[str, ...] = ()
    """Only these cities' topics (a process of rules partitioned by city); empty: all."""

    def validate(self, prefix: str) -> None:
        parse_mqtt_url(self.url, f"{prefix}.url")
        if not _ID.fullmatch(self.client_id):
            raise ConfigError(f"{prefix}.client_id", "must match [A-Za-z0-9_.-]{1,64}")
        for name in ("topic_root", "owntracks_root"):
            value = getattr(self, name)
            if not value or any(c in value for c in "+#/") or not value.isprintable():
                raise ConfigError(f"{prefix}.{name}", f"must be one topic level, got {value!r}")
        if self.keepalive < 5:
            raise ConfigError(f"{prefix}.keepalive", "must be at least 5s")
        if self.max_unacked < 100:
            raise ConfigError(f"{prefix}.max_unacked", "must be at least 100")
        if self.share_group and not _ID.fullmatch(self.share_group):
            raise ConfigError(f"{prefix}.share_group", "must match [A-Za-z0-9_.-]{1,64}")
        for i, city in enumerate(self.cities):
            if not _CITY.fullmatch(city):
                raise ConfigError(f"{prefix}.cities[{i}]", "must be a 6-digit city code")

    @property
    def broker(self) -> BrokerAddress:
        return parse_mqtt_url(self.url)


@dataclass(frozen=True)
class OwnTracksConfig:
    """``ingest.owntracks:`` — which OwnTracks user/device is which handheld."""

    city: str = ""
    devices: dict[str, str] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        if self.devices and not _CITY.fullmatch(self.city):
            raise ConfigError(
                f"{prefix}.city", "must be a 6-digit city code when devices are mapped"
            )
        for k, v in self.devices.items():
            user, _, dev = k.partition("/")
            if not user or not dev or "/" in dev:
                raise ConfigError(f"{prefix}.devices.{k}", "keys are 'user/device'")
            if not _ID.fullmatch(v):
                raise ConfigError(
                    f"{prefix}.devices.{k}", "device id must match [A-Za-z0-9_.-]{1,64}"
                )


@dataclass(frozen=True)
class IngestConfig:
    """``ingest:`` — validation limits and batching of the collector."""

    max_payload: int = size(64 * 1024)
    max_batch: int = 1000
    max_future: float = duration(300.0)
    max_age: float = duration(7 * 86400.0)
    deadletter_max: int = size(4096)
    batch_max: int = 5000
    owntracks: OwnTracksConfig = field(default_factory=OwnTracksConfig)

    def validate(self, prefix: str) -> None:
        if self.max_payload < 64:
            raise ConfigError(f"{prefix}.max_payload", "must be at least 64 bytes")
        if not 1 <= self.max_batch <= 100_000:
            raise ConfigError(f"{prefix}.max_batch", "must be between 1 and 100000")
        if self.max_age <= 0:
            raise ConfigError(f"{prefix}.max_age", "must be positive")
        if not 1 <= self.batch_max <= 100_000:
            raise ConfigError(f"{prefix}.batch_max", "must be between 1 and 100000")
