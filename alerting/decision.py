"""The decision: what the routing and muting stages resolved for one alert at one instant.

Alerting runs each alert through stages, as Alertmanager does (inhibit, silence,
route, notify): the lifecycle applies what happened (:mod:`alerting.lifecycle`),
the muting stage says whether something holds its notifications back
(:mod:`alerting.muting`), the routing stage resolves its route into the steps
below (:func:`alerting.routing.decide`), then :func:`alerting.lifecycle.due`
says whom to tell and the notify stage (:mod:`alerting.notify`) what each
receiver and channel gets. The decision is made once per event, timer or
acknowledgement, and the later stages read only it, never the configuration's
routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Step(NamedTuple):
    """One step of an alert's route, its placeholders filled in from the alert's labels.

    A named tuple, not a dataclass: one is made per step for every event.
    """

    receivers: tuple[str, ...]
    severity: str
    """The severity told at this step: the rule's at step 0, then the escalation step's."""
    after: float = 0.0
    """How long after the first notification this step is due (0 for step 0)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """An alert's route resolved into its steps, and what mutes it now (if anything).

    ``steps[0]`` is the route's receivers at the rule's severity; ``steps[n]`` the
    ``n``-th escalation step. ``muted_by`` is the id of what holds the alert's
    notifications back: a silence today, an inhibiting alert once inhibition rules exist.
    """

    steps: tuple[Step, ...]
    muted_by: str | None = None

    @property
    def muted(self) -> bool:
        """Whether the alert's notifications are held back now."""
        return self.muted_by is not None

    @property
    def last(self) -> int:
        """The last step's number: how many escalation steps follow the first receivers."""
        return len(self.steps) - 1

    def step(self, n: int) -> Step:
        """Step ``n``, clamped to the route (a chain shortened by a reload ends at its last)."""
        return self.steps[min(max(n, 0), self.last)]
