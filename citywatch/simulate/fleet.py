"""A deterministic fleet of city-management officers and the cases they handle.

:class:`Fleet` is pure: every random draw comes from generators seeded by
:attr:`SimConfig.seed`, and time only moves when :meth:`Fleet.advance` is
called with a new simulated time. Each officer carries one handheld that
publishes GPS fixes, heartbeats and a retained ``online``/``offline`` status;
the officer publishes shift events, and the case system publishes case
events. Topics (``{root}/{city}/...``) and payloads follow the collectors'
contract: compact JSON, RFC 3339 timestamps in +08:00, WGS-84 unless ``crs``
says ``gcj02`` or ``bd09``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from citywatch.simulate import cases
from citywatch.simulate.config import SimConfig
from citywatch.simulate.crew import Crew, Officer, build_crew
from citywatch.simulate.device import Device, DeviceSettings, rfc3339
from citywatch.simulate.message import Message, message_kind
from citywatch.simulate.walk import LocalProjection
from citywatch.topics import case_events_topic

__all__ = ["Fleet", "Message", "SimConfig", "message_kind", "rfc3339"]

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Actor(Protocol):
    def step(self, t: float, out: list[Message]) -> float | None: ...


class _CaseRun:
    """Publishes one planned case's events at their times."""

    def __init__(self, topic: str, base: dict[str, Any], steps: list[cases.Step]) -> None:
        self.topic, self.base, self.steps, self.i = topic, base, steps, 0

    def step(self, t: float, out: list[Message]) -> float | None:
        ts, event, extra = self.steps[self.i]
        payload = {"ts": rfc3339(ts), "event": event, **self.base, **extra}
        out.append(Message(self.topic, orjson.dumps(payload), retain=False))
        self.i += 1
        return self.steps[self.i][0] if self.i < len(self.steps) else None


class _CaseSource:
    """Reports cases as a Poisson process over the district."""

    def __init__(self, fleet: Fleet, crew: Crew, rng: random.Random, per_day: float) -> None:
        self.fleet, self.crew, self.rng, self.rate = fleet, crew, rng, per_day / 86400.0
        self.day, self.serial = "", 0

    def first(self, t: float) -> float | None:
        return t + self.rng.expovariate(self.rate) if self.rate > 0 else None

    def step(self, t: float, out: list[Message]) -> float | None:
        rng, crew = self.rng, self.crew
        day = rfc3339(t)[2:10].replace("-", "")
        self.serial = self.serial + 1 if day == self.day else 1
        self.day = day
        case_id = f"C{self.fleet.config.city}{day}{self.serial:04d}"
        on_duty = [d for d in self.fleet.devices if d.on_shift and d.officer.role == "inspector"]
        reporter = rng.choice(on_duty) if on_duty else None
        if reporter is not None:
            # Inspectors report what they come across, so the site is near them.
            pose = reporter.walker.at(t)
            x, y = pose.x + rng.uniform(-20, 20), pose.y + rng.uniform(-20, 20)
            found = crew.cell_at(x, y)
            cell = found or crew.cells[rng.choice(reporter.officer.grids)]
            if found is None:
                x, y = cell.random_point(rng)
        else:
            cell = rng.choice(list(crew.cells.values()))
            x, y = cell.random_point(rng)
        # Keep the site a metre clear of the edges so rounding cannot move it to a neighbour.
        x = min(max(x, cell.x0 + 1.0), cell.x1 - 1.0)
        y = min(max(y, cell.y0 + 1.0), cell.y1 - 1.0)
        category = cases.pick_category(rng)
        urgent = rng.random() < 0.1
        enforcers = crew.enforcers(cell.community)
        enforcer = rng.choice(enforcers).officer if enforcers else None
        lon, lat = self.fleet.projection.to_ll(x, y)
        base = {
            "category": category.code,
            "urgent": urgent,
            "grid": cell.code,
            "unit": category.unit,
            "lat": round(lat, 7),
            "lon": round(lon, 7),
        }
        officer = reporter.officer.officer if reporter else None
        steps = cases.plan_case(rng, t, urgent, category, officer, enforcer)
        topic = case_events_topic(self.fleet.config.topic_root, self.fleet.config.city, case_id)
        self.fleet.schedule(t, _CaseRun(topic, base, steps))
        return t + rng.expovariate(self.rate)


class Fleet:
    """The simulated fleet and case system, advanced by :meth:`advance`."""

    def __init__(self, config: SimConfig, grid_fc: Mapping[str, Any], start_ts: float) -> None:
        self.config = config
        self.start_ts = start_ts
        self.crew = build_crew(config, grid_fc)
        self.projection: LocalProjection = self.crew.projection
        settings = DeviceSettings(
            topic_root=config.topic_root,
            city=config.city,
            fix_interval=config.fix_interval,
            heartbeat_interval=config.heartbeat_interval,
        )
        self.devices = [
            Device(o, self.crew, settings, f"{config.seed}/device/{o.device}")
            for o in self.crew.officers
        ]
        self._heap: list[tuple[float, int, _Actor]] = []
        self._order = itertools.count()
        self._now = start_ts
        for device in self.devices:
            self.schedule(device.first(start_ts), device)
        rng = random.Random(f"{config.seed}/cases")
        source = _CaseSource(self, self.crew, rng, config.cases_per_day)
        first = source.first(start_ts)
        if first is not None:
            self.schedule(first, source)

    @property
    def roster(self) -> tuple[Officer, ...]:
        """Every officer with their device, role, grids, lead and behaviours."""
        return self.crew.officers

    @property
    def now(self) -> float:
        """The simulated time the fleet has been advanced to."""
        return self._now

    @property
    def next_due(self) -> float | None:
        """When the next message is due, or None if nothing more will happen."""
        return self._heap[0][0] if self._heap else None

    def behaviours(self) -> dict[str, tuple[str, ...]]:
        """Device id to the behaviours it was given (``idle``, ``offline``, ``gcj02``, ...)."""
        return {o.device: o.behaviours for o in self.crew.officers}

    def schedule(self, t: float, actor: _Actor) -> None:
        """Run ``actor`` at simulated time ``t`` (for the fleet's own actors)."""
        heapq.heappush(self._heap, (t, next(self._order), actor))

    def advance(self, now: float) -> list[Message]:
        """Every message due after the previous call and at or before ``now``, in time order."""
        out: list[Message] = []
        if now < self._now:
            return out
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, actor = heapq.heappop(heap)
            nxt = actor.step(t, out)
            if nxt is not None and nxt < math.inf:
                heapq.heappush(heap, (max(nxt, t), next(self._order), actor))
        self._now = now
        return out
