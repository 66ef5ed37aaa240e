"""The MQTT runner, against a stand-in for the paho client (no broker)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any, ClassVar

import orjson
import paho.mqtt.client as paho_client
import pytest

from citywatch.config import BrokerAddress, parse_mqtt_url
from citywatch.simulate import Message, SimConfig, run_simulation
from citywatch.simulate.runner import add_arguments, main


class FakeInfo:
    def __init__(self) -> None:
        self.waited = False

    def is_published(self) -> bool:
        return self.waited

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self.waited = True


class _Reason:
    is_failure = False

    def __str__(self) -> str:
        return "Success"


class FakeClient:
    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.infos: list[FakeInfo] = []
        self.calls: list[str] = []
        self.auth: tuple[str, str | None] | None = None
        self.on_connect: Any = None
        FakeClient.instances.append(self)

    def username_pw_set(self, user: str, password: str | None) -> None:
        self.auth = (user, password)

    def tls_set(self) -> None:
        self.calls.append("tls")

    def max_inflight_messages_set(self, n: int) -> None:
        pass

    def connect(self, host: str, port: int, keepalive: int) -> None:
        self.calls.append(f"connect {host}:{port}")

    def loop_start(self) -> None:
        self.calls.append("loop_start")
        self.on_connect(self, None, None, _Reason(), None)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> FakeInfo:
        self.published.append((topic, payload, qos, retain))
        info = FakeInfo()
        self.infos.append(info)
        return info

    def disconnect(self) -> None:
        self.calls.append("disconnect")

    def loop_stop(self) -> None:
        self.calls.append("loop_stop")


@pytest.fixture(autouse=True)
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.instances = []
    monkeypatch.setattr(paho_client, "Client", FakeClient)
    return FakeClient


def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://broker:1884") == BrokerAddress("broker", 1884, False)
    assert parse_mqtt_url("mqtt://127.0.0.1") == BrokerAddress("127.0.0.1", 1883, False)
    assert parse_mqtt_url("mqtts://u%40x:p%3Aw@h") == BrokerAddress("h", 8883, True, "u@x", "p:w")
    for bad in ("http://h:1883", "mqtt://:1883", "mqtt://h:notaport"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)


def test_publishes_a_sped_up_run_until_the_duration(tmp_path: Path) -> None:
    seen: list[Message] = []
    stats = run_simulation(
        SimConfig(devices=5),
        "mqtts://sim:secret@broker.example:8884",
        speedup=1e6,
        duration=600.0,
        grids_out=tmp_path / "grids.geojson",
        client_id="sim-test",
        on_message=seen.append,
    )
    (client,) = FakeClient.instances
    assert client.kwargs["client_id"] == "sim-test"
    assert client.auth == ("sim", "secret")
    assert client.calls[:3] == ["tls", "connect broker.example:8884", "loop_start"]
    assert client.calls[-2:] == ["disconnect", "loop_stop"]
    assert len(client.published) == stats.total == len(seen) > 0
    assert all(info.waited or info.is_published() for info in client.infos)
    assert all(qos == 1 for _, _, qos, _ in client.published)
    assert stats.published["gps"] > 200 and stats.published["status"] == 5
    assert stats.ended_at - stats.started_at == pytest.approx(600.0)
    assert stats.devices == 5 and stats.unconfirmed == 0
    assert "messages" in stats.summary()
    assert len(orjson.loads((tmp_path / "grids.geojson").read_bytes())["features"]) == 324


def test_stops_at_max_messages() -> None:
    stats = run_simulation(SimConfig(devices=3), "mqtt://h", speedup=1e6, max_messages=17)
    assert stats.total == 17 == len(FakeClient.instances[0].published)


def test_stops_when_asked_even_in_real_time() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    stats = run_simulation(SimConfig(devices=3), "mqtt://h", stop=stop)
    timer.join()
    assert stats.wall_seconds < 1.5
    assert stats.ended_at - stats.started_at < 2.0


def test_arguments_and_main(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--devices", "4", "--duration", "15m", "--speedup", "1e6", "--mqtt-url", "mqtt://h:1"]
    )
    assert args.duration == 900.0 and args.devices == 4 and args.fix_interval == 10.0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "simulate: done" in out and "from 4 devices" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["--duration", "soon"])
    assert main(parser.parse_args(["--mqtt-url", "ftp://h"])) == 2
