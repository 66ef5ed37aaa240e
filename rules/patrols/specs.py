"""The patrol rules, each declared once: the one table the rest derives from.

A :class:`PatrolRuleSpec` says everything about one patrol rule: the condition
(a pure function over the fleet's columns), whether it comes true by time alone,
its severity, the officer state it stands for, its threshold section in
``patrols:``, and its words for people (the alert summary, the console, the
Grafana map). From :data:`PATROL_RULES` derive the fleet's flag bits, the
evaluation order and the ticker's rules (:mod:`rules.patrols.evaluate`), an
officer's state (:func:`patrol_state`), the copy of thresholds into the fleet
(:func:`rules.patrols.state.set_thresholds`), the API's officer states and the
console's labels (:mod:`api`), alerting's text for the rule
(:mod:`alerting.summary`) and the Grafana states (:mod:`citywatch.grafana.command`).
``tests/rules/test_patrol_specs.py`` fails when a spec lacks one of its parts.

The position of a rule in :data:`PATROL_RULES` is its bit in ``Fleet.firing``,
which is saved with every officer's row: add new rules at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from citywatch.rules.patrols.fleet import Fleet, Floats, Idx
from citywatch.rules.patrols.idle import idle_since
from citywatch.rules.patrols.liveness import (
    gps_lost_due,
    gps_lost_since,
    offline_due,
    offline_since,
)
from citywatch.rules.patrols.out_of_grid import out_of_grid_since

Condition = Callable[[Fleet, Idx, float], Floats]
"""Per slot of ``idx``, since when the condition holds at ``now``, or NaN."""
Due = Callable[[Fleet, Idx], Floats]
"""Per slot, when a condition that comes true by time alone will hold if nothing more arrives."""


@dataclass(frozen=True)
class OfficerState:
    """A patrol state of an officer on shift, as the API names it and people see it."""

    name: str
    """In the API (``/api/v1/officers?state=``) and the gauge ``citywatch_patrol_officers``."""
    zh: str
    """The console's word (map legend)."""
    en: str
    """The console's word in English, and the Grafana map's description."""
    colour: str
    """The console map's colour of the officer's marker, ``#rrggbb``."""


@dataclass(frozen=True)
class PatrolRuleSpec:
    """One patrol rule: its condition and everything said about it elsewhere."""

    name: str
    """The alert rule (``AlertEvent.rule``), which routes and silences match."""
    severity: str
    """``yellow`` or ``red``."""
    since: Condition
    due: Due | None
    """For a rule that comes true by time alone (a timed rule, checked by the ticker over
    every officer): when it will; None for a rule that changes only with observations."""
    state: OfficerState
    """The officer's state while the rule fires (and no more serious one does)."""
    precedence: int
    """Lower is more serious: an officer's state is that of the firing rule of lowest
    precedence."""
    threshold: str
    """The rule's section of ``patrols:`` (a field of :class:`~rules.patrols.config.Thresholds`)."""
    columns: Mapping[str, str]
    """Each key of the threshold section to the fleet column it is copied into."""
    summary: str
    """Chinese, a few words: the alert's summary (``{officer} {summary} {duration}``), alerting's
    text for the rule and the console's label of the rule."""
    label: str
    """The console's label of the rule, in English."""
    grafana: tuple[str, str]
    """The Grafana command center map: the colour of the rule's markers, and its legend."""
    masked_by: tuple[str, ...] = field(default=())
    """Timed rules that, while firing, keep this one from starting (its due instant is not
    waited for meanwhile)."""

    @property
    def timed(self) -> bool:
        """The condition can come true with nothing arriving: the ticker checks it."""
        return self.due is not None


PATROLLING = OfficerState("patrolling", "巡查中", "patrolling", "#2b9348")
ON_BREAK = OfficerState("on_break", "休息", "on break", "#1c7ed6")

PATROL_RULES: tuple[PatrolRuleSpec, ...] = (
    PatrolRuleSpec(
        name="patrol_idle",
        severity="yellow",
        since=idle_since,
        due=None,
        state=OfficerState("idle", "原地停留", "idle", "#f08c00"),
        precedence=4,
        threshold="idle",
        columns={"window": "window", "radius": "radius", "max_acc": "max_acc"},
        summary="原地停留",
        label="idle",
        grafana=("yellow", "滞留 idle"),
    ),
    PatrolRuleSpec(
        name="patrol_out_of_grid",
        severity="yellow",
        since=out_of_grid_since,
        due=None,
        state=OfficerState("out_of_grid", "离开网格", "out of grid", "#c2255c"),
        precedence=3,
        threshold="out_of_grid",
        columns={"after": "out_after", "buffer": "buffer"},
        summary="离开责任网格",
        label="out of grid",
        grafana=("orange", "越界 out of grid"),
    ),
    PatrolRuleSpec(
        name="patrol_gps_lost",
        severity="red",
        since=gps_lost_since,
        due=gps_lost_due,
        state=OfficerState("gps_lost", "GPS丢失", "GPS lost", "#7048e8"),
        precedence=2,
        threshold="gps_lost",
        columns={"after": "gps_after"},
        summary="GPS信号丢失",
        label="GPS lost",
        grafana=("red", "GPS 丢失"),
        masked_by=("device_offline",),
    ),
    PatrolRuleSpec(
        name="device_offline",
        severity="red",
        since=offline_since,
        due=offline_due,
        state=OfficerState("offline", "离线", "offline", "#868e96"),
        precedence=1,
        threshold="offline",
        columns={"after": "offline_after"},
        summary="终端离线",
        label="device offline",
        grafana=("purple", "离线 offline"),
    ),
)
"""In evaluation order, which is also the order of the flag bits (saved: append only)."""

RULE_NAMES = tuple(s.name for s in PATROL_RULES)
INDEX = {s.name: i for i, s in enumerate(PATROL_RULES)}
"""A rule's position in :data:`PATROL_RULES`: its bit in ``firing``, its column in
``fired_since``."""
BY_PRECEDENCE = tuple(sorted(range(len(PATROL_RULES)), key=lambda i: PATROL_RULES[i].precedence))
"""Positions of the rules, most serious first."""
OFFICER_STATES = (PATROLLING, *(s.state for s in PATROL_RULES), ON_BREAK)
"""Every state of an officer on shift, as the API lists them."""
STATE_NAMES = tuple(s.name for s in OFFICER_STATES)


def patrol_state(f: Fleet, slot: int) -> str | None:
    """The officer's state for people: the most serious condition that holds."""
    if slot < 0 or not f.on_shift[slot]:
        return None
    if f.on_break[slot]:
        return ON_BREAK.name
    firing = int(f.firing[slot])
    for i in BY_PRECEDENCE:
        if firing & (1 << i):
            return PATROL_RULES[i].state.name
    return PATROLLING.name
