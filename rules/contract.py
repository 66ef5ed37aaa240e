"""What a rule is: the contract every rule meets, what it is handed, and what it may serve.

A rule is a :class:`~citywatch.sink.Sink` of records that turns them into alert
events, with state of its own. The service makes each rule of
:data:`rules.registry.RULES` from a :class:`RuleContext`, enters it (its state
is loaded), feeds it every batch, watches its background tasks, asks it whether
it is ready, and exits it at shutdown (its state is saved). That is
:class:`Rule`, and nothing else about a rule is known outside ``rules/``:

- live reload: a rule that can take new settings without a restart is
  :class:`Reconfigurable`; the reloader hands every such rule a new context;
- reading: the API holds typed read ports, :class:`CaseReader` and
  :class:`FleetReader`, served by whichever rule implements them.

The ports are ``runtime_checkable``: the service finds a port's rule with
``isinstance``, which checks that the methods are there (their types are
checked by mypy where the rules are registered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from prometheus_client import CollectorRegistry

from citywatch.clock import Clock
from citywatch.rules.calendar import CalendarConfig
from citywatch.rules.cases.config import CasesConfig
from citywatch.rules.cases.kpi import Kpi
from citywatch.rules.events import AlertSink
from citywatch.rules.patrols.config import PatrolsConfig
from citywatch.rules.patrols.grids import Grids
from citywatch.sink import RejectSink, Sink
from citywatch.topics import DEFAULT_ROOT


@dataclass(frozen=True)
class RuleContext:
    """What a rule may use: its settings, its outputs, metrics, the clock, the data folder."""

    cases: CasesConfig
    calendar: CalendarConfig
    alerts: AlertSink
    rejects: RejectSink
    registry: CollectorRegistry
    clock: Clock
    data_dir: Path
    store: Sink | None = None
    """Where rules store what they compute (the InfluxDB writer), beside alert events."""
    patrols: PatrolsConfig = field(default_factory=PatrolsConfig)
    grids: Grids | None = None
    """The unit grid cells (``grids_file``); without them out-of-grid and coverage are off."""
    topic_root: str = DEFAULT_ROOT
    """``mqtt.topic_root``: the topics that refused messages came on are named under it."""


@runtime_checkable
class Rule(Sink, Protocol):
    """A rule: a sink of records with state, background tasks and a lifecycle.

    ``async with rule`` loads its state (from ``RuleContext.data_dir``) and starts
    its tasks; leaving it stops them and saves what must survive a restart.
    ``write`` returns once what the records changed is durable: the collector
    acknowledges them to the broker only then.
    """

    name: str
    """The rule's key in :data:`rules.registry.RULES`."""

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """Background tasks that run for as long as the rule does; one ending is a failure."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the rule can do its job (its state store is open), and a word on it."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A rule that takes new settings while it runs, keeping its state."""

    def reload(self, ctx: RuleContext) -> None:
        """Apply the settings of ``ctx`` (read from a changed configuration) from now on.

        ``ctx`` holds the same outputs, clock and data folder as the one the rule
        was made with; only settings differ. The new configuration has been
        validated in full before this is called.
        """
        ...


@runtime_checkable
class CaseReader(Protocol):
    """What the API reads of the case rule: open cases with their lights, and KPIs."""

    @property
    def clock(self) -> Clock:
        """The rule's clock: "now" for the KPIs of the current month."""
        ...

    @property
    def kpi_timezone(self) -> str:
        """The time zone in which KPI months begin and end."""
        ...

    def open_cases(self) -> list[dict[str, Any]]:
        """Every open case with its running steps, deadlines and lights, as of now."""
        ...

    async def kpis_for(self, periods: Sequence[tuple[float, float]]) -> list[list[Kpi]]:
        """The KPIs of each (start, end) period."""
        ...


@runtime_checkable
class FleetReader(Protocol):
    """What the API reads of the patrol rule: the officers on shift."""

    def officer_views(self) -> list[dict[str, Any]]:
        """Each officer on shift: who, where, patrol state and coverage so far."""
        ...
