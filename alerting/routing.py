"""The routing stage: which route takes an alert, and whom each escalation step tells.

The first route whose ``match`` fits and whose ``active`` hours contain the
instant wins; a route outside its hours lets the alert fall through to the next
(so a night route, or the default, takes over). With no route taking it, patrol
alerts go to the officer's patrol lead and every other alert to ``duty``.
The route is chosen once, when the alert opens, and kept by name; at each
event, timer or acknowledgement :func:`decide` resolves it, once, into the
steps of a :class:`~alerting.decision.Decision` that the later stages read.
"""

from __future__ import annotations

import datetime

from citywatch.alerting.config import DUTY, AlertingConfig, Route, valid_receiver
from citywatch.alerting.decision import Decision, Step
from citywatch.alerting.model import Alert

DEFAULT = ""
_DEFAULT_PATROL = Route(name=DEFAULT, receivers=("{lead}",))
_DEFAULT_OTHER = Route(name=DEFAULT, receivers=(DUTY,))


def route_name(cfg: AlertingConfig, index: int) -> str:
    route = cfg.routes[index]
    return route.name or f"#{index}"


def choose_route(alert: Alert, cfg: AlertingConfig, now: float, tz: datetime.tzinfo) -> str:
    """The name of the route that takes ``alert`` at ``now`` (``""``: the default)."""
    fields = alert.fields()
    for i, route in enumerate(cfg.routes):
        if not route.match.matches(fields):
            continue
        if route.active is not None and not route.active.contains(now, tz):
            continue
        return route_name(cfg, i)
    return DEFAULT


def route_of(alert: Alert, cfg: AlertingConfig) -> Route:
    """The alert's route; the default when it is gone from the configuration."""
    for i, route in enumerate(cfg.routes):
        if alert.route and route_name(cfg, i) == alert.route:
            return route
    return _DEFAULT_PATROL if alert.subject_kind == "officer" else _DEFAULT_OTHER


def receivers(route: Route, step: int, alert: Alert) -> list[str]:
    """Whom step ``step`` tells (0: the route's receivers), placeholders filled in.

    ``{lead}``, ``{unit}`` and ``{officer}`` take the alert's label of that name;
    a placeholder the alert has no label for falls back to ``duty``.
    """
    step = min(step, len(route.escalate))
    names = route.receivers if step <= 0 else route.escalate[step - 1].receivers
    out: list[str] = []
    for name in names:
        if name.startswith("{"):
            name = alert.labels.get(name[1:-1]) or DUTY
            if not valid_receiver(name):
                name = DUTY  # a label that cannot name a topic (checked, never trusted)
        if name not in out:
            out.append(name)
    return out


def plan(route: Route, alert: Alert, muted_by: str | None = None) -> Decision:
    """``route`` resolved for ``alert``: each step's receivers and severity, and ``muted_by``.

    Step 0 is told at the rule's severity, each escalation step at its own.
    """
    steps = [Step(tuple(receivers(route, 0, alert)), alert.severity, 0.0)]
    for n, esc in enumerate(route.escalate, 1):
        steps.append(Step(tuple(receivers(route, n, alert)), esc.severity, esc.after))
    return Decision(tuple(steps), muted_by)


def decide(alert: Alert, cfg: AlertingConfig, muted_by: str | None = None) -> Decision:
    """The decision for ``alert`` now: its route (kept by name) resolved once, and its muting."""
    return plan(route_of(alert, cfg), alert, muted_by)
