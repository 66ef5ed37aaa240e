"""Nothing lost: InfluxDB down, service restarted or killed, broker restarted, spool full."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from citywatch.app.service import Service
from tests.helpers import (
    Publisher,
    ServiceProcess,
    await_until,
    connected,
    settings_for,
    wait_until,
    with_client_id,
)
from tests.services import Influx, Mosquitto

CITY = "321200"


def fixes(n: int, start: int = 0, device: str = "dev-1") -> list[tuple[str, dict[str, float]]]:
    base = time.time() - 3600
    return [
        (
            f"citywatch/{CITY}/devices/{device}/gps",
            {"ts": base + i, "lat": 32.45 + i * 1e-6, "lon": 119.92},
        )
        for i in range(start, start + n)
    ]


async def test_influxdb_down_mid_stream_spools_and_replays(
    mosquitto: Mosquitto, make_influx: Callable[[], Influx], tmp_path: Path
) -> None:
    influx = make_influx()
    influx.create_db("cw")
    settings = settings_for(mosquitto.url, influx.url, "cw", tmp_path)
    async with connected(settings, ["collector"]) as svc:
        assert svc.writer is not None
        writer = svc.writer
        with Publisher(mosquitto.port) as pub:
            pub.send_all(fixes(200))
            await await_until(lambda: influx.count("gps", "cw") == 200, what="first 200")
            influx.stop()
            pub.send_all(fixes(300, start=200))
            await await_until(lambda: writer.stats["spooled"] >= 300, what="spooled while down")
            assert len(writer.spool) > 0
            ready, detail = writer.ready()
            assert ready and "spooling" in detail
            influx.start()
            pub.send_all(fixes(100, start=500))
            await await_until(
                lambda: influx.count("gps", "cw") == 600 and len(writer.spool) == 0,
                timeout=30,
                what="replay after InfluxDB came back",
            )


async def test_spool_survives_a_restart_of_the_service(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    # First run: no InfluxDB configured, so everything waits in the spool.
    offline = settings_for(mosquitto.url, "", influx_db, tmp_path)
    async with connected(offline, ["collector"]) as svc:
        assert svc.writer is not None
        writer = svc.writer
        with Publisher(mosquitto.port) as pub:
            pub.send_all(fixes(250))
        await await_until(lambda: writer.stats["spooled"] == 250, what="spooled")
    # Second run, same data dir, InfluxDB configured: the spool is replayed.
    online = with_client_id(
        settings_for(mosquitto.url, influx.url, influx_db, tmp_path), offline.mqtt.client_id
    )
    async with Service(online, ["collector"]) as svc:
        assert svc.writer is not None
        writer = svc.writer
        await await_until(
            lambda: influx.count("gps", influx_db) == 250 and len(writer.spool) == 0,
            what="replayed spool",
        )


async def test_full_spool_holds_messages_in_the_broker_until_storage_returns(
    mosquitto: Mosquitto, make_influx: Callable[[], Influx], tmp_path: Path
) -> None:
    influx = make_influx()
    influx.create_db("cw")
    influx.stop()
    settings = settings_for(
        mosquitto.url,
        influx.url,
        "cw",
        tmp_path,
        spool={"max_bytes": "600B"},
        influx={"batch_size": 20, "gzip": False},
    )
    async with connected(settings, ["collector"]) as svc:
        assert svc.writer is not None
        writer = svc.writer
        with Publisher(mosquitto.port) as pub:
            pub.send_all(fixes(300))
        errors = svc.registry
        await await_until(
            lambda: (errors.get_sample_value("citywatch_spool_full_total") or 0) > 0,
            what="spool full",
        )
        assert writer.spool.bytes <= 600
        influx.start()
        await await_until(
            lambda: influx.count("gps", "cw") == 300, timeout=40, what="all 300 stored"
        )


async def test_broker_restart_mid_stream(
    make_mosquitto: Callable[[], Mosquitto], influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    broker = make_mosquitto()
    settings = settings_for(
        broker.url, influx.url, influx_db, tmp_path, mqtt={"reconnect_max": "1s"}
    )
    async with connected(settings, ["collector"]) as svc:
        assert svc.source is not None
        source = svc.source
        with Publisher(broker.port) as pub:
            pub.send_all(fixes(200))
            broker.stop()
            broker.start()
            await source.wait_connected(15)
            await await_until(pub.client.is_connected, what="publisher reconnected")
            pub.send_all(fixes(200, start=200), timeout=30)
        await await_until(lambda: influx.count("gps", influx_db) == 400, what="all 400 stored")
        assert (svc.registry.get_sample_value("citywatch_mqtt_reconnects_total") or 0) >= 1


def test_sigkill_mid_stream_loses_nothing(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    config = tmp_path / "cw.yaml"
    config.write_text(f"mqtt: {{client_id: kill-{influx_db}}}\ninflux: {{flush_interval: 200ms}}\n")
    svc = ServiceProcess(
        mosquitto, influx, influx_db, tmp_path, ["--only", "collector", "--config", str(config)]
    )
    svc.start()
    total = 3000
    try:
        wait_until(lambda: svc.metric("citywatch_mqtt_connected") == 1, what="service up")
        published = threading.Event()

        def publish() -> None:
            with Publisher(mosquitto.port) as pub:
                batch = fixes(total)
                for i in range(0, total, 100):
                    pub.send_all(batch[i : i + 100])
            published.set()

        t = threading.Thread(target=publish)
        t.start()
        wait_until(lambda: svc.metric("citywatch_write_points_total") >= 500, what="writes")
        svc.kill()
        assert influx.count("gps", influx_db) < total, "killed before the end of the stream"
        svc.start()
        t.join(60)
        assert published.is_set()
        wait_until(lambda: influx.count("gps", influx_db) == total, timeout=60, what="all stored")
    finally:
        svc.stop()
