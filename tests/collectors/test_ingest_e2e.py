"""End to end: real Mosquitto -> citywatch collector -> real InfluxDB, every message kind."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from citywatch.geo import gcj02_to_wgs84
from tests.helpers import (
    Listener,
    Publisher,
    await_until,
    connected,
    rfc3339,
    settings_for,
    shift_start,
)
from tests.services import Influx, Mosquitto

CITY = "321200"
GRID = "321202001001001"


async def test_every_message_kind_reaches_influxdb(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(
        mosquitto.url,
        influx.url,
        influx_db,
        tmp_path,
        ingest={"owntracks": {"city": CITY, "devices": {"alice/phone": "ot-alice"}}},
    )
    now = time.time()
    dl = Listener(mosquitto.port, "citywatch/+/deadletter")
    async with connected(settings, ["collector"]):
        root = f"citywatch/{CITY}"
        with Publisher(mosquitto.port) as pub:
            pub.send_all(
                [
                    (
                        f"{root}/devices/dev-1/gps",
                        {
                            "ts": rfc3339(now - 5),
                            "lat": 32.45,
                            "lon": 119.92,
                            "acc": 4,
                            "speed": 1.2,
                            "heading": 90,
                            "battery": 77,
                            "seq": 1,
                        },
                    ),
                    # A buffered upload: two good fixes and one impossible one.
                    (
                        f"{root}/devices/dev-1/gps",
                        [
                            {"ts": now - 60, "lat": 32.451, "lon": 119.921},
                            {"ts": now - 50, "lat": 95.0, "lon": 119.921},
                            {"ts": now - 40, "lat": 32.452, "lon": 119.922, "crs": "gcj02"},
                        ],
                    ),
                    (
                        f"{root}/devices/dev-1/heartbeat",
                        {
                            "ts": now - 1,
                            "battery": 76,
                            "charging": False,
                            "signal": -71,
                            "app": "2.3.1",
                            "gps": True,
                        },
                    ),
                    (f"{root}/devices/dev-1/status", b"online"),
                    (
                        f"{root}/officers/off-1/shift",
                        shift_start("dev-1", "lead-1", GRID, ts=now - 3600),
                    ),
                    (f"{root}/officers/off-1/shift", {"ts": now - 60, "action": "break_start"}),
                    (
                        f"{root}/cases/C1/events",
                        {
                            "ts": now - 300,
                            "event": "reported",
                            "category": "0101",
                            "grid": GRID,
                            "unit": "unit-sanitation",
                            "lat": 32.45,
                            "lon": 119.92,
                            "officer": "off-1",
                        },
                    ),
                    (
                        f"{root}/cases/C2/events",
                        {
                            "ts": now - 300,
                            "event": "reported",
                            "category": "0101",
                            "grid": GRID,
                            "unit": "unit-sanitation",
                        },
                    ),
                    (
                        f"{root}/cases/C1/events",
                        {"ts": now - 200, "event": "extended", "extend": "2h"},
                    ),
                    (
                        "owntracks/alice/phone",
                        {
                            "_type": "location",
                            "tst": int(now - 10),
                            "lat": 32.46,
                            "lon": 119.93,
                            "acc": 8,
                            "vel": 36,
                            "batt": 50,
                        },
                    ),
                    (f"{root}/devices/dev-2/gps", b"{not json"),
                ]
            )

        def stored() -> bool:
            return (
                influx.count("gps", influx_db) == 4
                and influx.count("case_event", influx_db) == 3
                and influx.count("ingest_rejected", influx_db) == 2
                and influx.count("heartbeat", influx_db) == 1
                and influx.count("device_status", influx_db) == 1
                and influx.count("shift", influx_db) == 2
            )

        await await_until(stored, what="every kind in InfluxDB")
        letters = dl.wait_for(2)
    dl.close()

    gps = {round(p["lat"], 3): p for p in influx.points("gps", influx_db)}
    assert gps[32.45]["device"] == "dev-1" and gps[32.45]["acc"] == 4.0 and gps[32.45]["seq"] == 1
    lon, lat = gcj02_to_wgs84(119.922, 32.452)
    converted = [p for p in gps.values() if abs(p["lat"] - lat) < 1e-9]
    assert converted and abs(converted[0]["lon"] - lon) < 1e-9, "GCJ-02 fix stored in WGS-84"
    owntracks = [p for p in gps.values() if p["device"] == "ot-alice"]
    assert owntracks and owntracks[0]["speed"] == 10.0 and owntracks[0]["source"] == "owntracks"
    cases = influx.points("case_event", influx_db)
    assert {c["case"] for c in cases} == {"C1", "C2"}
    assert [c["extend_s"] for c in cases if c["event"] == "extended"] == [7200.0]
    reasons = {orjson.loads(p)["reason"] for _, p in letters}
    assert reasons == {"out_of_range", "malformed_json"}
    element = next(
        orjson.loads(p) for _, p in letters if orjson.loads(p)["reason"] == "out_of_range"
    )
    assert element["index"] == 1 and element["topic"] == f"{root}/devices/dev-1/gps"
    assert {t for t, _ in letters} == {f"citywatch/{CITY}/deadletter"}


async def test_redelivered_message_is_stored_once(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path)
    now = time.time()
    fix = {"ts": now - 1, "lat": 32.45, "lon": 119.92}
    async with connected(settings, ["collector"]) as svc:
        with Publisher(mosquitto.port) as pub:
            pub.send_all([(f"citywatch/{CITY}/devices/dev-9/gps", fix)] * 3)
        await await_until(
            lambda: svc.writer is not None and svc.writer.stats["written"] >= 3, what="writes"
        )
    assert influx.count("gps", influx_db) == 1
