"""Topic routing: which decoder a topic goes to, the ids it carries, and what is refused."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from citywatch.collectors.config import IngestConfig
from citywatch.collectors.decode import BatchDecoder
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.reject import Reject
from citywatch.collectors.topics import Route, Router


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("citywatch/321200/devices/cgt-0042/gps", Route("gps", "321200", "cgt-0042")),
        ("citywatch/321200/devices/cgt-0042/heartbeat", Route("heartbeat", "321200", "cgt-0042")),
        ("citywatch/321200/devices/cgt-0042/status", Route("status", "321200", "cgt-0042")),
        ("citywatch/110105/officers/INS0042/shift", Route("shift", "110105", "INS0042")),
        (
            "citywatch/321200/cases/3212002026112200417/events",
            Route("case", "321200", "3212002026112200417"),
        ),
        ("citywatch/321200/devices/A.b_c-1/gps", Route("gps", "321200", "A.b_c-1")),
        ("citywatch/321200/devices/" + "x" * 64 + "/gps", Route("gps", "321200", "x" * 64)),
        ("owntracks/alice/phone", Route("owntracks", "", "alice/phone")),
    ],
)
def test_contract_topics_are_routed(topic: str, route: Route) -> None:
    assert Router().route(topic) == route


@pytest.mark.parametrize(
    "topic",
    [
        "citywatch/321200/deadletter",
        "citywatch/unknown/deadletter",
        "citywatch/321200/alerts/x",
        "citywatch/321200/alerts/leader/INS0020",
    ],
)
def test_own_output_topics_are_skipped(topic: str) -> None:
    assert Router().route(topic) is None


@pytest.mark.parametrize(
    "topic",
    [
        "citywatch/321200/devices/cgt-0042/location",
        "citywatch/321200/devices/cgt-0042",
        "citywatch/321200/devices/cgt-0042/gps/extra",
        "citywatch/321200/officers/INS0042/status",
        "citywatch/321200/cases/C1/event",
        "citywatch/321200/vehicles/v1/gps",
        "citywatch/321200",
        "citywatch",
        "telemetry/321200/devices/d/gps",
        "owntracks/alice",
        "owntracks/alice/phone/event",
        "",
    ],
)
def test_other_topics_are_unknown(topic: str) -> None:
    with pytest.raises(Reject) as info:
        Router().route(topic)
    assert info.value.reason == "unknown_topic"
    assert repr(topic) in info.value.detail


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        ("citywatch/12345/devices/cgt-0042/gps", "city"),
        ("citywatch/3212000/devices/cgt-0042/gps", "city"),
        ("citywatch/suzhou/devices/cgt-0042/gps", "city"),
        ("citywatch/321200/devices/cgt 0042/gps", "id"),
        ("citywatch/321200/devices/cgt+0042/gps", "id"),
        ("citywatch/321200/officers/王磊/shift", "id"),
        ("citywatch/321200/cases/" + "9" * 65 + "/events", "id"),
        ("citywatch/321200/devices//gps", "id"),
    ],
)
def test_bad_ids_in_topics(topic: str, named: str) -> None:
    with pytest.raises(Reject) as info:
        Router().route(topic)
    assert info.value.reason == "bad_id"
    assert info.value.detail.startswith(named)


@pytest.mark.parametrize(
    ("topic", "city"),
    [
        ("citywatch/321200/devices/d/gps", "321200"),
        ("citywatch/321200/anything", "321200"),
        ("citywatch/12345/devices/d/gps", None),
        ("owntracks/alice/phone", None),
        ("other/321200/devices/d/gps", None),
        ("citywatch", None),
    ],
)
def test_city_of(topic: str, city: str | None) -> None:
    assert Router().city_of(topic) == city


def test_subscriptions() -> None:
    assert Router().subscriptions() == ["citywatch/#", "owntracks/+/+"]
    assert Router("cw", "ot").subscriptions() == ["cw/#", "ot/+/+"]


def test_custom_roots() -> None:
    router = Router("cw", "ot")
    assert router.route("cw/321200/devices/d1/gps") == Route("gps", "321200", "d1")
    assert router.route("ot/alice/phone") == Route("owntracks", "", "alice/phone")
    assert router.route("cw/321200/deadletter") is None
    for topic in ("citywatch/321200/devices/d1/gps", "owntracks/alice/phone"):
        with pytest.raises(Reject, match="unknown_topic"):
            router.route(topic)
    decoder = BatchDecoder(IngestConfig(), router, CollectorMetrics(CollectorRegistry()))
    assert decoder.deadletter_topic("cw/321200/devices/d1/gps") == "cw/321200/deadletter"
    assert decoder.deadletter_topic("ot/alice/phone") == "cw/unknown/deadletter"


def test_answers_are_stable_when_cached() -> None:
    router = Router()
    good, bad = "citywatch/321200/devices/d1/gps", "citywatch/321200/devices/d1/gpz"
    assert router.route(good) is router.route(good)
    for _ in range(3):
        with pytest.raises(Reject) as info:
            router.route(bad)
        assert info.value.reason == "unknown_topic"


def _traceback_depth(exc: BaseException) -> int:
    depth, tb = 0, exc.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


def test_a_cached_rejection_does_not_grow_its_traceback() -> None:
    router = Router()
    depths = []
    for _ in range(5):
        try:
            router.route("citywatch/321200/devices/d1/location")
        except Reject as exc:
            depths.append(_traceback_depth(exc))
    assert len(set(depths)) == 1, depths
