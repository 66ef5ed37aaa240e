"""End to end: a GPS array of bad fixes makes one dead letter on the real broker, not one each."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.helpers import Listener, Publisher, await_until, connected, settings_for
from tests.services import Influx, Mosquitto

CITY = "321200"
BATCH = f"citywatch/{CITY}/devices/dev-1/gps"
LAST = f"citywatch/{CITY}/devices/dev-2/gps"


async def test_a_batch_of_bad_fixes_is_one_dead_letter(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto.url, influx.url, influx_db, tmp_path)
    now = time.time()
    # About 2 KB: 998 elements that are not fixes, a fix without lon, and one good fix.
    batch = [5] * 998 + [
        {"ts": now - 20, "lat": 32.45},
        {"ts": now - 10, "lat": 32.45, "lon": 119.92},
    ]
    payload = orjson.dumps(batch)
    with Listener(mosquitto.port, "citywatch/+/deadletter") as dl:
        async with connected(settings, ["collector"]) as svc:
            with Publisher(mosquitto.port) as pub:
                # The second message's dead letter comes after every one of the first's.
                pub.send_all([(BATCH, payload), (LAST, b"{not json")])

            def letters_for(topic: str) -> list[dict[str, object]]:
                docs = [orjson.loads(raw) for _, raw in dl.messages]
                return [d for d in docs if d["topic"] == topic]

            await await_until(lambda: len(letters_for(LAST)) == 1, what="the last dead letter")
            await await_until(lambda: influx.count("gps", influx_db) == 1, what="the good fix")
            registry = svc.registry
        (letter,) = letters_for(BATCH)
        assert (letter["reason"], letter["index"], letter["rejected"]) == ("wrong_type", 0, 999)
        assert letter["reasons"] == {"wrong_type": 998, "missing_field": 1}
        assert len(letter["elements"]) == 10  # type: ignore[arg-type]
        assert letter["size"] == len(payload) and letter["payload"] == payload.decode()
        sent = sum(len(raw) for _, raw in dl.messages if orjson.loads(raw)["topic"] == BATCH)
        assert sent < 2 * settings.ingest.deadletter_max
        # The metric still counts every refused element.
        count = registry.get_sample_value
        assert (
            count("citywatch_ingest_rejected_total", {"kind": "gps", "reason": "wrong_type"}) == 998
        )
        labels = {"kind": "gps", "reason": "missing_field"}
        assert count("citywatch_ingest_rejected_total", labels) == 1
        assert count("citywatch_ingest_accepted_total", {"kind": "gps"}) == 1
