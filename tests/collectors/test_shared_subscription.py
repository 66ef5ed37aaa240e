"""Scaling out: collectors sharing the broker's traffic, and rules partitioned by city."""

from __future__ import annotations

import time
from pathlib import Path

from citywatch.app.service import Service
from tests.helpers import Publisher, await_until, connected, settings_for
from tests.services import Influx, Mosquitto


def ingested(svc: Service) -> float:
    """Messages received, over every topic kind."""
    return sum(
        s.value
        for family in svc.registry.collect()
        for s in family.samples
        if s.name == "citywatch_ingest_received_total"
    )


def fixes(city: str, n: int) -> list[tuple[str, dict[str, float]]]:
    now = time.time()
    return [
        (
            f"citywatch/{city}/devices/d{i % 40:03d}/gps",
            {"ts": now - n + i, "lat": 32.45, "lon": 119.92},
        )
        for i in range(n)
    ]


async def test_two_collectors_in_a_share_group_split_the_traffic_and_lose_nothing(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    shared = {"share_group": "collectors"}
    a = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "a", mqtt=shared)
    b = settings_for(mosquitto.url, influx.url, influx_db, tmp_path / "b", mqtt=shared)
    async with Service(a, ["collector"]) as sa, Service(b, ["collector"]) as sb:
        assert sa.source is not None and sb.source is not None
        await sa.source.wait_connected(10)
        await sb.source.wait_connected(10)
        with Publisher(mosquitto.port) as pub:
            pub.send_all(fixes("321200", 400))
        await await_until(lambda: ingested(sa) + ingested(sb) >= 400, what="all ingested")
        await await_until(lambda: influx.count("gps", influx_db) == 400, what="all stored")
        assert ingested(sa) + ingested(sb) == 400
        assert ingested(sa) > 0 and ingested(sb) > 0


async def test_a_process_for_some_cities_takes_only_theirs(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    s = settings_for(
        mosquitto.url, influx.url, influx_db, tmp_path / "c", mqtt={"cities": ["321200"]}
    )
    async with connected(s, ["collector"]) as svc:
        with Publisher(mosquitto.port) as pub:
            pub.send_all(fixes("320100", 30) + fixes("321200", 20))
        await await_until(lambda: influx.count("gps", influx_db) == 20, what="stored")
        assert ingested(svc) == 20
