"""The whole configuration: one section per component, each defined beside its code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citywatch.alerting.config import AlertingConfig
from citywatch.api.config import ApiConfig
from citywatch.collectors.config import IngestConfig, MqttConfig
from citywatch.config import ConfigError, load_section, read_raw
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.roster import DevicesConfig
from citywatch.rules.calendar import CalendarConfig
from citywatch.rules.cases.config import CasesConfig
from citywatch.rules.patrols.config import PatrolsConfig

_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    """Top level of the YAML file."""

    data_dir: str = "./var"
    log_level: str = "info"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    cases: CasesConfig = field(default_factory=CasesConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    patrols: PatrolsConfig = field(default_factory=PatrolsConfig)
    grids_file: str = ""
    alerting: AlertingConfig = field(default_factory=AlertingConfig)

    def validate(self, prefix: str) -> None:
        if self.log_level not in _LEVELS:
            raise ConfigError("log_level", f"must be one of {', '.join(_LEVELS)}")
        if not self.data_dir:
            raise ConfigError("data_dir", "must not be empty")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file and the environment; raises :class:`ConfigError` naming the key."""
    raw: dict[str, Any] = read_raw(path, env)
    return load_section(Settings, raw, "")
