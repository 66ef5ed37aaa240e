"""Points InfluxDB refuses: found among the batch, dead-lettered, counted; the rest stored.

InfluxDB 1.x answers a batch holding refused points with 400 ``partial write: ...`` and
stores the others. Against a real InfluxDB started with ``max-values-per-tag = 5``, every
fix must end up either stored or dead-lettered (``influx_refused``), never both, never
neither; live and replayed from the spool alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from citywatch.influx import delivery
from citywatch.influx.client import WriteError
from citywatch.influx.config import InfluxConfig, SpoolConfig
from citywatch.influx.delivery import Refusal, chunks, refusal_cause
from citywatch.influx.metrics import WriterMetrics
from citywatch.influx.refused import refused_record, series_of
from citywatch.influx.writer import InfluxWriter
from citywatch.models import Fix, Heartbeat, Rejected
from tests.helpers import (
    Listener,
    Publisher,
    await_until,
    connected,
    settings_for,
    spool_holding,
    string_lat_first,
)
from tests.services import Influx, Mosquitto

CITY = "321200"
DEADLETTER_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "deadletter.json"
BASE = int(time.time()) - 3600

Key = tuple[str, int]


def gps(device: str, i: int) -> tuple[str, dict[str, float]]:
    """A fix at a whole second, so that its InfluxDB time is exact."""
    return (
        f"citywatch/{CITY}/devices/{device}/gps",
        {"ts": BASE + i, "lat": 32.45 + i * 1e-5, "lon": 119.92},
    )


def key_of(device: str, i: int) -> Key:
    return device, (BASE + i) * 1_000_000_000


def stored(influx: Influx, db: str) -> set[Key]:
    return {(p["device"], p["time"]) for p in influx.points("gps", db)}


def dead_lettered(listener: Listener) -> list[tuple[Key, dict[str, object]]]:
    out = []
    for _, payload in list(listener.messages):
        doc = orjson.loads(payload)
        line = doc["payload"]
        measurement, tags = series_of(line)
        assert measurement == "gps", line
        out.append(((tags["device"], int(line.rsplit(" ", 1)[1])), doc))
    return out


class Capture:
    """A dead-letter sink that keeps what it is given."""

    def __init__(self) -> None:
        self.letters: list[tuple[Rejected, bytes]] = []

    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        self.letters.append((rejected, payload))


async def test_points_over_max_values_per_tag_are_dead_lettered_and_the_rest_stored(
    mosquitto: Mosquitto, make_influx: Callable[..., Influx], tmp_path: Path
) -> None:
    influx = make_influx(settings={"data": ["max-values-per-tag = 5"]})
    influx.create_db("cw")
    settings = settings_for(mosquitto.url, influx.url, "cw", tmp_path)
    known = [f"dev-{n:02d}" for n in range(6)]  # one more than the limit: 1.x checks before
    new = [f"new-{n:02d}" for n in range(6)]
    listener = Listener(mosquitto.port, f"citywatch/{CITY}/deadletter")
    async with connected(settings, ["collector"]) as svc:
        assert svc.writer is not None
        writer, registry = svc.writer, svc.registry
        with Publisher(mosquitto.port) as pub:
            pub.send_all(gps(d, i) for d in known for i in range(5))
            await await_until(lambda: len(stored(influx, "cw")) == 30, what="first devices")

            # Live: fixes of known and of new devices mixed in the same batches.
            sent = [(d, i) for i in range(5, 10) for d in known + new]
            pub.send_all(gps(d, i) for d, i in sent)
            accepted = {key_of(d, i) for d, i in sent if d in known}
            refused = {key_of(d, i) for d, i in sent if d in new}
            await await_until(
                lambda: len(listener.messages) >= len(refused), what="dead letters (live)"
            )
            await await_until(
                lambda: accepted <= stored(influx, "cw"), what="accepted points (live)"
            )

            # Replayed: the same again from the spool, written while InfluxDB was down.
            influx.stop()
            sent2 = [(d, i) for i in range(10, 13) for d in known + new]
            pub.send_all(gps(d, i) for d, i in sent2)
            await await_until(lambda: writer.stats["spooled"] >= len(sent2), what="spooled")
            influx.start()
            accepted |= {key_of(d, i) for d, i in sent2 if d in known}
            refused |= {key_of(d, i) for d, i in sent2 if d in new}
            await await_until(
                lambda: len(writer.spool) == 0 and len(listener.messages) >= len(refused),
                timeout=30,
                what="replay and its dead letters",
            )

        letters = dead_lettered(listener)
        in_influx = stored(influx, "cw")
        assert {k for k, _ in letters} == refused
        assert len(letters) == len(refused), "one dead letter per refused point"
        assert accepted | {key_of(d, i) for d in known for i in range(5)} == in_influx
        assert not refused & in_influx
        schema = json.loads(DEADLETTER_SCHEMA.read_text(encoding="utf-8"))
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for _, doc in letters:
            validator.validate(doc)
            assert doc["reason"] == "influx_refused"
            assert "max-values-per-tag limit exceeded" in str(doc["detail"])
            assert str(doc["detail"]).startswith("max_values_per_tag: ")

        sample = registry.get_sample_value
        n = len(refused)
        assert sample("citywatch_write_refused_points_total", {"reason": "max_values_per_tag"}) == n
        assert sample("citywatch_write_points_total", {"outcome": "dropped"}) == n
        assert (sample("citywatch_ingest_sink_given_up_total") or 0) == 0
        # Each dead letter is also recorded in InfluxDB, like every other rejection.
        where = "\"reason\" = 'influx_refused' AND \"kind\" = 'gps'"
        await await_until(
            lambda: influx.count("ingest_rejected", "cw", where) == n, what="rejection records"
        )
    listener.close()


async def test_a_field_type_conflict_refuses_those_points_only(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    # lat written as a string first: InfluxDB refuses our float lat in that shard.
    now = time.time()
    string_lat_first(influx, influx_db, CITY, now - 100)
    registry = CollectorRegistry()
    capture = Capture()
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    metrics = WriterMetrics(registry)
    async with InfluxWriter(cfg, SpoolConfig(), tmp_path / "spool", metrics, rejects=capture) as w:
        beats = [Heartbeat(CITY, f"dev-{n}", now - 50 + n, now, battery=50.0) for n in range(40)]
        fixes = [Fix(CITY, f"dev-{n}", now - 10 + n, 32.45, 119.92, now) for n in range(3)]
        await w.write(beats[:20] + fixes + beats[20:])
        assert w.stats["written"] == 40
        assert w.stats["dropped"] == 3
    assert influx.count("heartbeat", influx_db) == 40
    assert influx.count("gps", influx_db) == 1  # only the string one
    assert (
        registry.get_sample_value(
            "citywatch_write_refused_points_total", {"reason": "field_type_conflict"}
        )
        == 3
    )
    assert len(capture.letters) == 3
    for rejected, payload in capture.letters:
        assert rejected.reason == "influx_refused" and rejected.kind == "gps"
        assert rejected.city == CITY
        assert payload.startswith(b"gps,city=321200,device=dev-")
        assert "field type conflict" in rejected.detail


async def test_a_replayed_spool_file_with_a_line_influxdb_cannot_parse(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    # A spool file written by some earlier version, holding one line InfluxDB cannot parse.
    t = int((time.time() - 60) * 1e9)
    good = [f"heartbeat,city={CITY},device=dev-{n} battery=5.0 {t + n}" for n in range(30)]
    bad = f"heartbeat,city={CITY},device=dev-bad battery= {t}"
    spool = spool_holding(tmp_path, delivery.encode([*good[:10], bad, *good[10:]], True))
    registry = CollectorRegistry()
    capture = Capture()
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    async with InfluxWriter(
        cfg, SpoolConfig(), spool, WriterMetrics(registry), rejects=capture
    ) as w:
        await await_until(lambda: len(w.spool) == 0, what="replay")
    assert influx.count("heartbeat", influx_db) == 30
    assert [p for _, p in capture.letters] == [bad.encode()]
    assert capture.letters[0][0].city == CITY
    assert (
        registry.get_sample_value("citywatch_write_refused_points_total", {"reason": "unparsable"})
        == 1
    )
    assert registry.get_sample_value("citywatch_write_points_total", {"outcome": "replayed"}) == 30


async def test_dead_letters_before_the_sink_is_attached_are_kept(
    influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    # The replay may start before the service has wired the dead letters (start-up).
    spool = spool_holding(tmp_path, b"heartbeat,city=321200,device=d battery= 1")
    cfg = InfluxConfig(url=influx.url, db=influx_db, flush_interval=0.05)
    registry = CollectorRegistry()
    async with InfluxWriter(cfg, SpoolConfig(), spool, WriterMetrics(registry)) as w:
        await await_until(lambda: len(w.spool) == 0, what="replay")
        capture = Capture()
        await w.use_rejects(capture)
    assert [p for _, p in capture.letters] == [b"heartbeat,city=321200,device=d battery= 1"]


# -- the pieces ---------------------------------------------------------------------------


def _error(status: int, detail: str) -> WriteError:
    return WriteError(
        f"InfluxDB answered {status}: {detail}", retryable=False, status=status, detail=detail
    )


@pytest.mark.parametrize(
    ("status", "detail", "cause"),
    [
        (400, 'partial write: max-values-per-tag limit exceeded (6/5): measurement="gps" '
         'tag="device" value="e6" dropped=3', "max_values_per_tag"),
        (400, 'partial write: field type conflict: input field "lat" on measurement "gps" is '
         "type string, already exists as type float dropped=1", "field_type_conflict"),
        (400, "unable to parse 'gps,device=d1 lat=': missing field value", "unparsable"),
        (400, "partial write: points beyond retention policy dropped=2", "beyond_retention"),
        (422, "failure writing points to database: partial write: points beyond retention "
         "policy dropped=1", "beyond_retention"),
        (413, "Request Entity Too Large", "too_large"),
        (400, "partial write: something new dropped=1", "other"),
        # The request itself, not a point: retried, never dead-lettered.
        (400, "retention policy not found: weekly", None),
        (400, "database is required", None),
        (404, "database not found: cw", None),
    ],
)  # fmt: skip
def test_refusal_cause_tells_points_from_requests(status: int, detail: str, cause: str) -> None:
    exc = _error(status, detail)
    if status == 404:
        exc.retryable = True
    assert refusal_cause(exc) == cause


def test_chunks_cap_points_and_bytes_and_keep_order() -> None:
    lines = [f"m f={i}i {i}" for i in range(100)]
    parts = chunks(lines, 7, 60)
    assert [line for part in parts for line in part] == lines
    for part in parts:
        assert len(part) <= 7
        assert len("\n".join(part).encode()) <= 60
    assert chunks(["x" * 100, "y"], 10, 50) == [["x" * 100], ["y"]]
    # Bytes, not characters: a tag value in Chinese.
    wide = ["m,grid=网格 f=1i 1"] * 10
    for part in chunks(wide, 100, 50):
        assert len("\n".join(part).encode()) <= 50


def test_series_of_unescapes_measurement_and_tags() -> None:
    line = r"gps,city=321200,device=a\ b\,c\=d,k\=ey=v lat=1.0 5"
    assert series_of(line) == ("gps", {"city": "321200", "device": "a b,c=d", "k=ey": "v"})
    assert series_of("m f=1i 1") == ("m", {})


def test_the_record_of_a_refused_point_is_not_dead_lettered_again() -> None:
    first = Refusal("gps,city=321200,device=d lat=1.0 1", "field_type_conflict", "x")
    rec = refused_record(first, 1.0)
    assert rec is not None and rec.kind == "gps" and rec.city == "321200"
    from citywatch.influx.schema import to_line

    again = Refusal(to_line(rec), "field_type_conflict", "y")
    assert refused_record(again, 2.0) is None
    # Only a valid city code names a topic.
    odd = Refusal("gps,city=a/+,device=d lat=1.0 1", "other", "x")
    rec = refused_record(odd, 1.0)
    assert rec is not None and rec.city is None
