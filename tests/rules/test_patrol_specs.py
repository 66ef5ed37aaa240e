"""The table of patrol rules: every spec has all its parts, and every mirror derives from it.

A new patrol rule is one module (its condition) plus one :class:`PatrolRuleSpec` in
``PATROL_RULES``; these tests fail when the spec lacks a part (words, a colour, a threshold
section in ``patrols:`` and its fleet columns, its documentation) or a place that shows the
rules does not follow the table.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from citywatch.alerting import summary
from citywatch.api import openapi
from citywatch.api.server import make_app
from citywatch.api.views import fleet as fleet_view
from citywatch.grafana import command
from citywatch.rules.patrols.config import Override, PatrolsConfig, Thresholds
from citywatch.rules.patrols.fleet import COLUMNS, Fleet
from citywatch.rules.patrols.specs import (
    OFFICER_STATES,
    PATROL_RULES,
    RULE_NAMES,
    STATE_NAMES,
    OfficerState,
    PatrolRuleSpec,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
EXAMPLE = yaml.safe_load((ROOT / "citywatch.example.yaml").read_text())
COLOUR = re.compile(r"#[0-9a-f]{6}").fullmatch
CJK = re.compile(r"[\u4e00-\u9fff]")


def state_problems(st: OfficerState) -> list[str]:
    out = []
    if not re.fullmatch(r"[a-z_]+", st.name):
        out.append(f"state {st.name!r}: a name of lower-case letters and _")
    if not CJK.search(st.zh):
        out.append(f"state {st.name}: no Chinese word")
    if not st.en:
        out.append(f"state {st.name}: no English word")
    if not COLOUR(st.colour):
        out.append(f"state {st.name}: colour {st.colour!r} is not #rrggbb")
    return out


def problems(spec: PatrolRuleSpec) -> list[str]:
    """What the spec lacks; empty when it is whole."""
    out = state_problems(spec.state)
    name = spec.name
    if spec.severity not in ("yellow", "red"):
        out.append(f"{name}: severity {spec.severity!r}")
    if not CJK.search(spec.summary):
        out.append(f"{name}: no Chinese summary")
    if not spec.label:
        out.append(f"{name}: no console label")
    colour, legend = spec.grafana
    if not colour or not legend:
        out.append(f"{name}: no Grafana colour and legend")
    if not callable(spec.since):
        out.append(f"{name}: no condition")
    for m in spec.masked_by:
        masking = [s for s in PATROL_RULES if s.name == m]
        if not masking or not masking[0].timed or not spec.timed:
            out.append(f"{name}: masked by {m!r}, which is not a timed rule of the table")
    # The threshold section: in the config (defaults and overrides), wholly copied into the
    # fleet, documented and in the example file.
    sections = {f.name: f for f in dataclasses.fields(Thresholds)}
    section = sections.get(spec.threshold)
    if section is None:
        out.append(f"{name}: threshold section {spec.threshold!r} is not a field of Thresholds")
        return out
    if spec.threshold not in {f.name for f in dataclasses.fields(Override)}:
        out.append(f"{name}: patrols.overrides[] cannot set {spec.threshold!r}")
    keys = {f.name for f in dataclasses.fields(getattr(Thresholds(), spec.threshold))}
    if set(spec.columns) != keys:
        out.append(f"{name}: columns map {sorted(spec.columns)}, the section has {sorted(keys)}")
    for key, column in spec.columns.items():
        if column not in COLUMNS:
            out.append(f"{name}: {spec.threshold}.{key} goes to {column!r}, not a fleet column")
        if f"`{spec.threshold}.{key}`" not in CONFIG_DOC:
            out.append(f"{name}: patrols {spec.threshold}.{key} not in docs/configuration.md")
    if spec.threshold not in EXAMPLE["patrols"]:
        out.append(f"{name}: patrols.{spec.threshold} not in citywatch.example.yaml")
    return out


@pytest.mark.parametrize("spec", PATROL_RULES, ids=RULE_NAMES)
def test_every_spec_has_all_its_parts(spec: PatrolRuleSpec) -> None:
    assert problems(spec) == []


def test_a_spec_lacking_a_part_is_caught() -> None:
    spec = PATROL_RULES[0]
    broken = [
        dataclasses.replace(spec, summary=""),
        dataclasses.replace(spec, label=""),
        dataclasses.replace(spec, grafana=("", "")),
        dataclasses.replace(spec, threshold="standing"),
        dataclasses.replace(spec, columns={"window": "window"}),
        dataclasses.replace(spec, state=dataclasses.replace(spec.state, colour="orange")),
    ]
    for b in broken:
        assert problems(b), b


def test_the_table_is_consistent() -> None:
    assert len(set(RULE_NAMES)) == len(PATROL_RULES)
    assert len(set(STATE_NAMES)) == len(OFFICER_STATES)
    for st in OFFICER_STATES:
        assert state_problems(st) == []
    assert len({s.precedence for s in PATROL_RULES}) == len(PATROL_RULES), "a strict order"
    # Every threshold section belongs to a rule.
    assert {s.threshold for s in PATROL_RULES} == {f.name for f in dataclasses.fields(Thresholds)}
    assert [f.name for f in dataclasses.fields(PatrolsConfig)][:-1] == [
        f.name for f in dataclasses.fields(Thresholds)
    ]


def test_saved_flag_bits_keep_their_rules() -> None:
    """A rule's position is its bit in saved rows: the rules of saved stores keep theirs."""
    assert RULE_NAMES[:4] == (
        "patrol_idle",
        "patrol_out_of_grid",
        "patrol_gps_lost",
        "device_offline",
    )
    f = Fleet(len(PATROL_RULES), capacity=1)
    assert f.fired_since.shape[1] == len(PATROL_RULES)
    assert f.firing.dtype.itemsize * 8 >= len(PATROL_RULES)


def test_every_place_that_shows_the_rules_follows_the_table() -> None:
    assert fleet_view.OFFICER_STATES == STATE_NAMES
    doc = openapi.document("1.0")
    assert doc["components"]["schemas"]["Officer"]["properties"]["state"]["enum"] == list(
        STATE_NAMES
    )
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "command.json").read_text())
    text = json.dumps(dashboard, ensure_ascii=False)
    for spec in PATROL_RULES:
        assert summary.RULE[spec.name] == spec.summary
        assert command.PATROL_STATES[spec.name] == spec.grafana
        # The committed dashboard colours the rule's markers (it equals the generator's output:
        # tests/grafana/test_grafana_files.py).
        assert f'"{spec.name}"' in text and spec.grafana[1] in text


async def test_the_console_learns_the_words_of_every_rule_and_state() -> None:
    async with TestClient(TestServer(make_app(CollectorRegistry(), {}))) as client:
        r = await client.get("/console/config.json")
        assert r.status == 200
        words = (await r.json())["patrol"]
    assert words["rules"] == {s.name: [s.summary, s.label] for s in PATROL_RULES}
    assert words["states"] == [[s.name, s.zh, s.en, s.colour] for s in OFFICER_STATES]
