"""A decoder that fails unexpectedly dead-letters the message instead of stopping ingest."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.message import Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.registry import COLLECTORS
from citywatch.collectors.topics import Route, Router
from citywatch.models import Record


def _broken(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    raise KeyError("bug")


def test_a_decoder_bug_becomes_an_internal_error_dead_letter() -> None:
    registry = CollectorRegistry()
    decoders = dict(COLLECTORS, heartbeat=_broken)
    dec = BatchDecoder(IngestConfig(), Router(), CollectorMetrics(registry), decoders)
    now = 1_790_000_000.0
    out = dec.decode(
        [
            Incoming("citywatch/321200/devices/d1/heartbeat", b'{"ts": 1790000000}', now),
            Incoming(
                "citywatch/321200/devices/d1/gps",
                b'{"ts": 1790000000, "lat": 32.4, "lon": 119.9}',
                now,
            ),
        ]
    )
    assert [type(r).__name__ for r in out.records] == ["Rejected", "Fix"]
    ((topic, payload),) = out.deadletters
    assert topic == "citywatch/321200/deadletter"
    assert orjson.loads(payload)["reason"] == "internal_error"
    labels = {"kind": "heartbeat", "reason": "internal_error"}
    assert registry.get_sample_value("citywatch_ingest_rejected_total", labels) == 1
