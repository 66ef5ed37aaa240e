"""Typed configuration: YAML plus the ``CITYWATCH_*`` environment contract.

Each component declares its settings as a frozen dataclass beside its code;
:func:`load_section` fills one from a mapping, converting durations
(``30s``, ``15m``, ``2h``, ``1d``) and sizes (``64KiB``, ``1GB``) and
rejecting unknown keys, so a bad file fails at start-up with a message that
names the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import yaml

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


def parse_duration(value: object, key: str = "duration") -> float:
    """Parse ``30s``, ``15m``, ``2h``, ``1d``, ``1h30m`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration like 30s, 15m, 2h or 1d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ConfigError(key, f"expected a duration like 30s, 15m, 2h or 1d, got {value!r}")
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ConfigError(key, f"expected a duration like 30s, 15m, 2h or 1d, got {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(key, f"duration must be finite and not negative, got {value!r}")
    return seconds


_DISTANCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|km)?\s*$")


def parse_distance(value: object, key: str = "distance") -> float:
    """Parse ``50m``, ``1.5km`` or a number of metres (``m`` here means metres)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DISTANCE_RE.match(value)
        if m:
            return float(m.group(1)) * (1000.0 if m.group(2) == "km" else 1.0)
    raise ConfigError(key, f"expected a distance like 50m or 1.5km, got {value!r}")


def parse_size(value: object, key: str = "size") -> int:
    """Parse ``512``, ``64KiB``, ``10MB`` or ``1GiB`` into bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ConfigError(key, f"expected a size like 512, 64KiB or 1GiB, got {value!r}")


def duration(default: float, **kw: Any) -> Any:
    """A dataclass field holding seconds, written in the config as ``30s``/``15m``/..."""
    return dataclasses.field(default=default, metadata={"kind": "duration", **kw})


def distance(default: float, **kw: Any) -> Any:
    """A dataclass field holding metres, written in the config as ``50m``/``1.5km``."""
    return dataclasses.field(default=default, metadata={"kind": "distance", **kw})


def size(default: int, **kw: Any) -> Any:
    """A dataclass field holding bytes, written in the config as ``64KiB``/``1GiB``/..."""
    return dataclasses.field(default=default, metadata={"kind": "size", **kw})


def _convert(value: object, tp: Any, key: str, meta: Mapping[str, Any]) -> Any:
    kind = meta.get("kind")
    if kind == "duration":
        return parse_duration(value, key)
    if kind == "size":
        return parse_size(value, key)
    if kind == "distance":
        return parse_distance(value, key)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key, meta)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        # A section may accept a shorthand (e.g. a bare duration for a mapping).
        coerce = getattr(tp, "coerce_raw", None)
        if coerce is not None:
            value = coerce(value, key)
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        select = meta.get("select")
        if select is not None:
            # The field stands for a family of classes (a webhook entry's settings, by its
            # ``kind``): the field's ``select(raw, key)`` names the one to build.
            tp = select(value, key)
        return load_section(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, datetime.date):  # YAML reads 2026-10-09 as a date
            return value.isoformat()
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return str(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp)
        items = {"select": meta["select"]} if "select" in meta else {}
        return tuple(_convert(v, item_tp, f"{key}[{i}]", items) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        ktp, vtp = typing.get_args(tp)
        return {
            _convert(k, ktp, f"{key}.{k}", {}): _convert(v, vtp, f"{key}.{k}", {})
            for k, v in value.items()
        }
    raise ConfigError(key, f"unsupported type {tp!r}")


def load_section(cls: type[T], data: Mapping[str, Any] | None, prefix: str) -> T:
    """Build the frozen dataclass ``cls`` from ``data``; keys are reported as ``prefix.key``.

    A field whose metadata has ``select`` (a function of the raw mapping and its key)
    stands for a family of classes, and ``select`` names the one to build.
    """
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{prefix}.{name}" if prefix else str(name), f"unknown key (known: {known})"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(data[name], hints[name], key, f.metadata)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix, str(exc)) from exc
    check = getattr(obj, "validate", None)
    if check is not None:
        check(prefix)
    return obj


# The environment contract: variable -> dotted config key.
ENV_OVERRIDES: dict[str, str] = {
    "CITYWATCH_MQTT_URL": "mqtt.url",
    "CITYWATCH_INFLUX_URL": "influx.url",
    "CITYWATCH_INFLUX_DB": "influx.db",
    "CITYWATCH_INFLUX_TOKEN": "influx.token",
    "CITYWATCH_INFLUX_ORG": "influx.org",
    "CITYWATCH_INFLUX_BUCKET": "influx.bucket",
    "CITYWATCH_API_ADDR": "api.addr",
    "CITYWATCH_DATA_DIR": "data_dir",
}


def read_raw(path: str | Path | None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the YAML file (``path`` or ``$CITYWATCH_CONFIG``) and apply the env overrides."""
    env = os.environ if env is None else env
    path = path or env.get("CITYWATCH_CONFIG") or None
    raw: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("--config", f"{path} must hold a mapping at the top level")
        raw = loaded or {}
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            node = raw
            *parents, leaf = dotted.split(".")
            for p in parents:
                child = node.get(p)
                if child is None:
                    child = node[p] = {}
                if not isinstance(child, dict):
                    raise ConfigError(p, f"expected a mapping (set by {var})")
                node = child
            node[leaf] = env[var]
    return raw


def split_host_port(value: str, key: str, default_port: int) -> tuple[str, int]:
    """Parse ``host:port`` (or ``[::1]:port``), naming ``key`` on error."""
    if value.count(":") > 1 and not value.startswith("["):
        raise ConfigError(key, f"write an IPv6 address in brackets, like [::1]:8080, not {value!r}")
    host, sep, port_s = value.rpartition(":")
    if not sep:
        host, port_s = value, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(key, f"expected host:port, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"port out of range in {value!r}")
    return host, port


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """A parsed ``mqtt://[user:pass@]host:port`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """Where, without the password (safe to log and to show)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str, key: str = "mqtt.url") -> BrokerAddress:
    """Parse a broker URL, naming ``key`` in the error."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(key, f"scheme must be mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise ConfigError(key, f"no host in {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
