"""Configuration: durations, sizes, the YAML file, the ``CITYWATCH_*`` env contract, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from citywatch.app.settings import Settings, load_settings
from citywatch.config import ConfigError, parse_duration, parse_size, split_host_port

NO_ENV: dict[str, str] = {}
PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "citywatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- parse_duration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        (" 1h 30m ", 5400.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


BAD_DURATIONS = ["abc", "-5s", "10x", "", "s", "1h30", "30 seconds", "1H", "1h-30m"]


@pytest.mark.parametrize("value", [*BAD_DURATIONS, True, False, None, -5, [1], math.nan, math.inf])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "ingest.max_age")
    assert info.value.key == "ingest.max_age"
    assert "ingest.max_age" in str(info.value)


# -- parse_size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (512, 512),
        (0, 0),
        ("512", 512),
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("64kib", 64 * 1024),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("1GiB", 1024**3),
        ("2 MiB", 2 * 1024**2),
        ("1.5KiB", 1536),
        ("1TiB", 1024**4),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [-1, True, 1.5, None, "", "abc", "10XB", "-5", "5 K", "1e3"])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(value, "spool.max_bytes")
    assert info.value.key == "spool.max_bytes"


# -- defaults and the YAML file -------------------------------------------------------


def test_defaults_without_file_or_env() -> None:
    s = load_settings(None, NO_ENV)
    assert s == Settings()
    assert s.data_dir == "./var"
    assert s.log_level == "info"
    assert s.mqtt.url == "mqtt://127.0.0.1:1883"
    assert s.mqtt.keepalive == 30.0
    assert s.mqtt.broker.port == 1883
    assert not s.mqtt.broker.tls
    assert s.ingest.max_payload == 64 * 1024
    assert s.ingest.max_batch == 1000
    assert s.ingest.max_future == 300.0
    assert s.ingest.max_age == 7 * 86400.0
    assert s.ingest.deadletter_max == 4096
    assert s.influx.url == ""
    assert s.influx.db == "citywatch"
    assert not s.influx.v2
    assert s.spool.max_bytes == 1024**3
    assert s.api.host_port == ("127.0.0.1", 8080)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write_yaml(tmp_path, ""), NO_ENV) == Settings()


def test_file_values(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
data_dir: /srv/citywatch
log_level: debug
mqtt:
  url: mqtts://user:p%40ss@broker.example:8884
  client_id: cw-1
  keepalive: 1m
ingest:
  max_payload: 128KiB
  max_future: 2m
  max_age: 1d12h
  deadletter_max: 1KiB
  owntracks:
    city: "321200"
    devices:
      alice/phone: ot-alice
influx:
  url: http://influx.example:8086
  db: cw
  gzip: false
  timeout: 2s
spool:
  max_bytes: 10MB
  fsync: false
api:
  addr: 0.0.0.0:9090
""",
    )
    s = load_settings(path, NO_ENV)
    assert s.data_path == Path("/srv/citywatch")
    assert s.log_level == "debug"
    broker = s.mqtt.broker
    assert (broker.host, broker.port, broker.tls) == ("broker.example", 8884, True)
    assert (broker.username, broker.password) == ("user", "p@ss")
    assert s.mqtt.client_id == "cw-1"
    assert s.mqtt.keepalive == 60.0
    assert s.ingest.max_payload == 128 * 1024
    assert s.ingest.max_future == 120.0
    assert s.ingest.max_age == 36 * 3600.0
    assert s.ingest.deadletter_max == 1024
    assert s.ingest.owntracks.city == "321200"
    assert s.ingest.owntracks.devices == {"alice/phone": "ot-alice"}
    assert s.influx.url == "http://influx.example:8086"
    assert s.influx.db == "cw"
    assert s.influx.gzip is False
    assert s.influx.timeout == 2.0
    assert s.spool.max_bytes == 10_000_000
    assert s.spool.fsync is False
    assert s.api.host_port == ("0.0.0.0", 9090)


# -- the environment contract ---------------------------------------------------------

FILE_FOR_ENV = """
data_dir: /from/file
mqtt:
  url: mqtt://file-broker:1883
  keepalive: 45s
influx:
  url: http://file-influx:8086
  db: filedb
api:
  addr: 127.0.0.1:8000
"""


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("CITYWATCH_MQTT_URL", "mqtt://env-broker:1884", ("mqtt", "url"), "mqtt://env-broker:1884"),
        (
            "CITYWATCH_INFLUX_URL",
            "https://env-influx:8443",
            ("influx", "url"),
            "https://env-influx:8443",
        ),
        ("CITYWATCH_INFLUX_DB", "envdb", ("influx", "db"), "envdb"),
        ("CITYWATCH_API_ADDR", "0.0.0.0:9999", ("api", "addr"), "0.0.0.0:9999"),
        ("CITYWATCH_DATA_DIR", "/from/env", ("data_dir",), "/from/env"),
    ],
)
def test_env_overrides_file(
    tmp_path: Path, var: str, value: str, attr: tuple[str, ...], expected: str
) -> None:
    path = write_yaml(tmp_path, FILE_FOR_ENV)
    s: object = load_settings(path, {var: value})
    for name in attr:
        s = getattr(s, name)
    assert s == expected


def test_env_keeps_the_other_file_values(tmp_path: Path) -> None:
    s = load_settings(write_yaml(tmp_path, FILE_FOR_ENV), {"CITYWATCH_MQTT_URL": "mqtt://e:1"})
    assert s.mqtt.url == "mqtt://e:1"
    assert s.mqtt.keepalive == 45.0
    assert s.influx.db == "filedb"
    assert s.data_dir == "/from/file"


def test_env_without_file() -> None:
    s = load_settings(None, {"CITYWATCH_INFLUX_URL": "http://x:8086", "CITYWATCH_DATA_DIR": "/d"})
    assert s.influx.url == "http://x:8086"
    assert s.data_dir == "/d"


def test_empty_env_value_does_not_override(tmp_path: Path) -> None:
    s = load_settings(write_yaml(tmp_path, FILE_FOR_ENV), {"CITYWATCH_INFLUX_DB": ""})
    assert s.influx.db == "filedb"


def test_env_v2_token_org_bucket() -> None:
    s = load_settings(
        None,
        {
            "CITYWATCH_INFLUX_URL": "http://x:8086",
            "CITYWATCH_INFLUX_TOKEN": "secret",
            "CITYWATCH_INFLUX_ORG": "city",
            "CITYWATCH_INFLUX_BUCKET": "telemetry",
        },
    )
    assert (s.influx.token, s.influx.org, s.influx.bucket) == ("secret", "city", "telemetry")
    assert s.influx.v2


@pytest.mark.parametrize(
    "env",
    [
        {"CITYWATCH_INFLUX_TOKEN": "secret"},
        {"CITYWATCH_INFLUX_BUCKET": "telemetry"},
        {"CITYWATCH_INFLUX_TOKEN": "secret", "CITYWATCH_INFLUX_BUCKET": "telemetry"},
        {"CITYWATCH_INFLUX_ORG": "city", "CITYWATCH_INFLUX_BUCKET": "telemetry"},
    ],
)
def test_env_v2_needs_token_org_and_bucket_together(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert info.value.key == "influx.bucket"


def test_citywatch_config_names_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "log_level: warning\n")
    assert load_settings(None, {"CITYWATCH_CONFIG": str(path)}).log_level == "warning"


def test_explicit_path_wins_over_citywatch_config(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "log_level: error\n")
    env = {"CITYWATCH_CONFIG": str(tmp_path / "absent.yaml")}
    assert load_settings(path, env).log_level == "error"


def test_env_into_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write_yaml(tmp_path, "mqtt: 5\n"), {"CITYWATCH_MQTT_URL": "mqtt://h"})
    assert info.value.key == "mqtt"
    assert "CITYWATCH_MQTT_URL" in str(info.value)


# -- errors name the dotted key -------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        # unknown keys
        ("colour: red\n", "colour"),
        ("mqtt:\n  hots: x\n", "mqtt.hots"),
        ("ingest:\n  owntracks:\n    cty: '321200'\n", "ingest.owntracks.cty"),
        # wrong types
        ("mqtt: 5\n", "mqtt"),
        ("mqtt:\n  keepalive: true\n", "mqtt.keepalive"),
        ("mqtt:\n  max_unacked: '500'\n", "mqtt.max_unacked"),
        ("mqtt:\n  tls_insecure: 'yes'\n", "mqtt.tls_insecure"),
        ("ingest:\n  max_batch: 10.5\n", "ingest.max_batch"),
        ("ingest:\n  max_payload: lots\n", "ingest.max_payload"),
        ("influx:\n  gzip: 1\n", "influx.gzip"),
        ("influx:\n  db: [a]\n", "influx.db"),
        ("ingest:\n  owntracks:\n    devices: [a]\n", "ingest.owntracks.devices"),
        # bad URLs
        ("mqtt:\n  url: http://broker:1883\n", "mqtt.url"),
        ("mqtt:\n  url: mqtt://\n", "mqtt.url"),
        ("mqtt:\n  url: mqtt://broker:99999\n", "mqtt.url"),
        ("influx:\n  url: ftp://influx:8086\n", "influx.url"),
        ("influx:\n  url: influx:8086\n", "influx.url"),
        # bad durations and values out of range
        ("mqtt:\n  keepalive: 10x\n", "mqtt.keepalive"),
        ("mqtt:\n  keepalive: 2s\n", "mqtt.keepalive"),
        ("ingest:\n  max_age: abc\n", "ingest.max_age"),
        ("ingest:\n  max_age: 0s\n", "ingest.max_age"),
        ("ingest:\n  max_future: -5s\n", "ingest.max_future"),
        ("ingest:\n  max_payload: 10\n", "ingest.max_payload"),
        ("ingest:\n  max_batch: 0\n", "ingest.max_batch"),
        ("influx:\n  flush_interval: 0s\n", "influx.flush_interval"),
        ("mqtt:\n  client_id: 'has space'\n", "mqtt.client_id"),
        ("mqtt:\n  topic_root: 'a/b'\n", "mqtt.topic_root"),
        ("log_level: verbose\n", "log_level"),
        ("data_dir: ''\n", "data_dir"),
        # owntracks mapping
        ("ingest:\n  owntracks:\n    devices: {a/b: x}\n", "ingest.owntracks.city"),
        (
            "ingest:\n  owntracks:\n    city: '321200'\n    devices: {alice: x}\n",
            "ingest.owntracks.devices.alice",
        ),
        # bad api.addr
        ("api:\n  addr: localhost:http\n", "api.addr"),
        ("api:\n  addr: 127.0.0.1:70000\n", "api.addr"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write_yaml(tmp_path, yaml_text), NO_ENV)
    assert info.value.key == key
    assert repr(key) in str(info.value)


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("CITYWATCH_MQTT_URL", "http://broker:1883", "mqtt.url"),
        ("CITYWATCH_INFLUX_URL", "ftp://influx:8086", "influx.url"),
        ("CITYWATCH_API_ADDR", "somewhere:port", "api.addr"),
    ],
)
def test_bad_env_value_names_the_key(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {var: value})
    assert info.value.key == key


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "mqtt:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_settings(path, NO_ENV)
    assert str(path) in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write_yaml(tmp_path, "- a\n- b\n"), NO_ENV)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_settings(path, NO_ENV)
    assert str(path) in str(info.value)


def test_missing_file_named_by_citywatch_config(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(None, {"CITYWATCH_CONFIG": str(path)})


# -- api.addr -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9000", ("::1", 9000)),
        (":9000", ("127.0.0.1", 9000)),
        ("localhost", ("localhost", 8080)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value, "api.addr", 8080) == expected


def test_bare_ipv6_address_is_not_misread() -> None:
    try:
        host, port = split_host_port("::1", "api.addr", 8080)
    except ConfigError:
        return
    assert (host, port) == ("::1", 8080)


def _doc_yaml_blocks() -> list[str]:
    text = PROTOCOL.read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)


def test_protocol_doc_shows_configuration() -> None:
    assert _doc_yaml_blocks(), "docs/protocol.md has no ```yaml block any more"


@pytest.mark.parametrize("block", _doc_yaml_blocks())
def test_yaml_shown_in_the_protocol_doc_loads(tmp_path: Path, block: str) -> None:
    settings = load_settings(write_yaml(tmp_path, block), NO_ENV)
    if "owntracks" in block:
        assert settings.ingest.owntracks.devices
        assert settings.ingest.owntracks.city == "321200"
