"""Routing and silences as pure functions."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from citywatch.alerting import routing
from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.model import Alert
from citywatch.alerting.silences import Matcher, Silence, SilenceError, silenced_by
from citywatch.alerting.store import AlertStore
from citywatch.config import ConfigError, load_section
from tests.alerting.alerts import alert as base_alert

TZ = ZoneInfo("Asia/Shanghai")
# Monday 2026-11-23, 10:00 and 22:00 in Beijing.
DAY = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp()
NIGHT = datetime.datetime(2026, 11, 23, 22, 0, tzinfo=TZ).timestamp()
SUNDAY = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=TZ).timestamp()

RAW = {
    "routes": [
        {
            "name": "gulou-red",
            "match": {"grid": ["320106"], "severity": ["red"]},
            "receivers": ["gulou-duty"],
        },
        {
            "name": "cases-by-unit",
            "match": {"subject": ["case"], "unit": ["城管执法大队", "环卫处"]},
            "receivers": ["{unit}"],
        },
        {
            "name": "daytime-patrols",
            "match": {
                "city": ["321200"],
                "rule": ["patrol_idle", "patrol_out_of_grid"],
                "role": ["inspector"],
            },
            "receivers": ["{lead}"],
            "escalate": [{"after": "10m", "receivers": ["district-supervisor"]}],
            "active": {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "08:00",
                "end": "18:00",
            },
        },
        {"name": "night", "match": {"subject": ["officer"]}, "receivers": ["night-desk"]},
    ]
}
CFG = load_section(AlertingConfig, RAW, "alerting")


def alert(
    kind: str = "officer", severity: str = "yellow", rule: str = "patrol_idle", **labels: str
) -> Alert:
    return base_alert(
        rule=rule,
        severity=severity,
        subject_kind=kind,
        subject="s1",
        starts_at=DAY,
        opened_at=DAY,
        labels=dict(labels),
    )


def test_first_matching_route_by_grid_prefix_and_severity() -> None:
    a = alert(severity="red", grid="320106001002", lead="lead-1", role="inspector")
    assert routing.choose_route(a, CFG, DAY, TZ) == "gulou-red"
    a.route = "gulou-red"
    assert routing.receivers(routing.route_of(a, CFG), 0, a) == ["gulou-duty"]
    other = alert(severity="red", grid="320107001002", lead="lead-1", role="inspector")
    assert routing.choose_route(other, CFG, DAY, TZ) == "daytime-patrols"


def test_placeholders_take_the_alerts_labels() -> None:
    a = alert(kind="case", rule="case_overdue", unit="环卫处")
    assert routing.choose_route(a, CFG, DAY, TZ) == "cases-by-unit"
    a.route = "cases-by-unit"
    # A unit name is not a topic-safe receiver name: duty gets it instead.
    assert routing.receivers(routing.route_of(a, CFG), 0, a) == ["duty"]
    ok = dict(RAW)
    ok["routes"] = [{"name": "u", "match": {"subject": ["case"]}, "receivers": ["{unit}"]}]
    cfg = load_section(AlertingConfig, ok, "alerting")
    b = alert(kind="case", unit="unit-7")
    b.route = routing.choose_route(b, cfg, DAY, TZ)
    assert routing.receivers(routing.route_of(b, cfg), 0, b) == ["unit-7"]


def test_active_hours_fall_through_to_the_next_route() -> None:
    a = alert(lead="lead-1", role="inspector")
    assert routing.choose_route(a, CFG, DAY, TZ) == "daytime-patrols"
    assert routing.choose_route(a, CFG, NIGHT, TZ) == "night"
    assert routing.choose_route(a, CFG, SUNDAY, TZ) == "night"
    enforcer = alert(lead="lead-1", role="enforcer")
    assert routing.choose_route(enforcer, CFG, DAY, TZ) == "night"


def test_with_no_routes_patrol_alerts_go_to_the_lead_and_the_rest_to_duty() -> None:
    cfg = AlertingConfig()
    patrol = alert(lead="lead-9")
    patrol.route = routing.choose_route(patrol, cfg, DAY, TZ)
    assert routing.receivers(routing.route_of(patrol, cfg), 0, patrol) == ["lead-9"]
    case = alert(kind="case", rule="case_overdue", grid="1")
    case.route = routing.choose_route(case, cfg, DAY, TZ)
    assert routing.receivers(routing.route_of(case, cfg), 0, case) == ["duty"]


def test_a_route_gone_from_the_config_falls_back_to_the_default() -> None:
    a = alert(lead="lead-1")
    a.route = "no-longer-there"
    assert routing.receivers(routing.route_of(a, CFG), 0, a) == ["lead-1"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"routes": [{"receivers": ["a/b"]}]}, "alerting.routes[0].receivers[0]"),
        (
            {"routes": [{"receivers": ["x"], "match": {"severity": ["pink"]}}]},
            "alerting.routes[0].match.severity[0]",
        ),
        (
            {"routes": [{"receivers": ["x"], "active": {"start": "18:00", "end": "08:00"}}]},
            "alerting.routes[0].active.end",
        ),
        (
            {"routes": [{"receivers": ["x"], "active": {"days": ["monday"]}}]},
            "alerting.routes[0].active.days[0]",
        ),
        ({"timezone": "Mars/Olympus"}, "alerting.timezone"),
        ({"receivers": {"a b": {}}}, "alerting.receivers.a b"),
        ({"delivery": {"batch_max": 0}}, "alerting.delivery.batch_max"),
        (
            {"receivers": {"duty": {"webhooks": [{"kind": "icq", "url": "http://x"}]}}},
            "alerting.receivers.duty.webhooks[0].kind",
        ),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_section(AlertingConfig, raw, "alerting")
    assert info.value.key == key


def silence(*matchers: Matcher, start: float = DAY, end: float = DAY + 3600) -> Silence:
    return Silence("s1", matchers, start, end, "duty-desk", "street market on Sunday", DAY)


def test_silences_match_fields_and_labels_within_their_window() -> None:
    a = alert(grid="320106001002", officer="off-7")
    fields = a.fields()
    s = silence(Matcher("grid", "320106.*", "=~"), Matcher("rule", "patrol_idle"))
    assert s.matches(fields)
    assert silenced_by({"s1": s}, fields, DAY + 10) == "s1"
    assert silenced_by({"s1": s}, fields, DAY + 3600) is None
    assert silenced_by({"s1": s}, fields, DAY - 1) is None
    assert not silence(Matcher("grid", "3201.*", "!~")).matches({"grid": "320106"})
    assert silence(Matcher("officer", "off-8", "!=")).matches(fields)
    # A regular expression matches the whole value, as in Alertmanager.
    assert not silence(Matcher("grid", "3201", "=~")).matches(fields)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: silence(), "at least one matcher"),
        (lambda: silence(Matcher("rule", "x"), start=DAY, end=DAY), "ends_at"),
        (lambda: Matcher("grid", "([", "=~"), "regular expression"),
        (lambda: Matcher("grid", "x", "~~"), "op"),
        (lambda: Silence("s", (Matcher("a", "b"),), DAY, DAY + 1, " ", "why", DAY), "who"),
        (lambda: Silence("s", (Matcher("a", "b"),), DAY, DAY + 1, "me", "", DAY), "why"),
    ],
)
def test_bad_silences_are_refused_with_a_reason(build: object, problem: str) -> None:
    with pytest.raises(SilenceError, match=problem):
        build()  # type: ignore[operator]


def test_silence_patterns_are_matched_by_re2_compiled_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python's re takes a backreference and a look-ahead; RE2, the linear-time engine
    # Alertmanager uses, has neither, so refusing them shows which engine runs.
    for pattern in (r"(a)\1", "(?=a)a", "a{1001}"):
        with pytest.raises(SilenceError, match="RE2"):
            Matcher("subject_id", pattern, "=~")
    # The pattern that stalled the loop (12 ``x*`` then ``y``) is answered.
    stall = Matcher("subject_id", "x*" * 12 + "y", "=~")
    # A quantified group cannot backtrack in RE2, so it is no longer refused.
    either = Matcher("grid", "(3201|3202)+.*", "!~")
    # Still the whole value, not a prefix.
    prefix = Matcher("grid", "3201", "=~")
    # Compiled when made: matching compiles nothing.
    import re2

    def no_compiling(*args: object, **kw: object) -> None:
        raise AssertionError("compiled while matching")

    monkeypatch.setattr(re2, "compile", no_compiling)
    assert not stall.matches({"subject_id": "x" * 30})
    assert stall.matches({"subject_id": "x" * 30 + "y"})
    assert not either.matches({"grid": "320132019"})
    assert either.matches({"grid": "3203"})
    assert not prefix.matches({"grid": "320106"})


def test_a_stored_silence_whose_pattern_re2_refuses_loads_and_mutes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Stored before patterns were RE2's: a look-ahead, which Python's re took.
    doc = silence(Matcher("rule", "patrol_idle")).to_json()
    doc["matchers"].append({"name": "grid", "value": "(?!3201).*", "op": "=~"})
    store = AlertStore(tmp_path / "alerts.db", DAY)
    try:
        store.db.execute(
            "INSERT INTO silences (id, ends_at, doc) VALUES (?,?,?)",
            (doc["id"], doc["ends_at"], orjson.dumps(doc)),
        )
        with caplog.at_level(logging.WARNING, logger="citywatch.alerting.silences"):
            (loaded,) = store.load_silences(DAY)
    finally:
        store.close()
    # Kept as it was stored, so it is listed and can be ended, but it mutes nothing.
    assert loaded.to_json() == doc
    assert not loaded.matches({"rule": "patrol_idle", "grid": "320106"})
    assert "(?!3201).*" in caplog.text and "matches nothing" in caplog.text


def test_the_documented_example_is_valid() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(alerting:\n.*?)```", text, re.S)
    assert block is not None
    cfg = load_section(AlertingConfig, yaml.safe_load(block.group(1))["alerting"], "alerting")
    assert [r.name for r in cfg.routes] == ["gulou-red", "patrols-daytime", "cases"]
    assert cfg.receiver("district-supervisor").webhooks[0].kind == "feishu"
    assert cfg.receiver("someone-else").mqtt and not cfg.receiver("someone-else").webhooks
