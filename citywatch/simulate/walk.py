"""How an officer moves: a random walk along the edges of their grid cells.

Positions are kept in metres on a local flat projection; over a couple of
kilometres its error is far below GPS noise. A :class:`Walker` is a lazily
extended sequence of straight legs, each chosen only from the walker's own
random generator when the previous leg ends, so the path does not depend on
how often anyone asks where the officer is.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from citywatch.geo import EARTH_RADIUS_M

EpisodeKind = Literal["idle", "break", "leave"]


class LocalProjection:
    """Equirectangular metres east/north of an origin (lon, lat)."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self._ky = EARTH_RADIUS_M * math.pi / 180.0
        self._kx = self._ky * math.cos(math.radians(lat0))

    def to_m(self, lon: float, lat: float) -> tuple[float, float]:
        """(east, north) metres of a WGS-84 point."""
        return (lon - self.lon0) * self._kx, (lat - self.lat0) * self._ky

    def to_ll(self, x: float, y: float) -> tuple[float, float]:
        """(lon, lat) of a point ``x`` metres east and ``y`` north of the origin."""
        return self.lon0 + x / self._kx, self.lat0 + y / self._ky


class PatrolGraph:
    """The corners and edges of a set of rectangular cells, given in metres."""

    def __init__(self, boxes: Iterable[tuple[float, float, float, float]]) -> None:
        index: dict[tuple[float, float], int] = {}
        self.nodes: list[tuple[float, float]] = []
        self.adj: list[list[int]] = []

        def node(x: float, y: float) -> int:
            key = (round(x, 2), round(y, 2))
            if key not in index:
                index[key] = len(self.nodes)
                self.nodes.append((x, y))
                self.adj.append([])
            return index[key]

        for x0, y0, x1, y1 in boxes:
            ring = [node(x0, y0), node(x1, y0), node(x1, y1), node(x0, y1)]
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                if b not in self.adj[a]:
                    self.adj[a].append(b)
                    self.adj[b].append(a)
        if not self.nodes:
            raise ValueError("a patrol graph needs at least one cell")
        xs = [p[0] for p in self.nodes]
        ys = [p[1] for p in self.nodes]
        self.center = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        self.radius = max(math.dist(self.center, p) for p in self.nodes)

    def nearest(self, x: float, y: float) -> int:
        """The node closest to (x, y)."""
        return min(range(len(self.nodes)), key=lambda i: math.dist((x, y), self.nodes[i]))


@dataclass(frozen=True, slots=True)
class Episode:
    """A stretch of unusual movement: standing still (idle, break) or leaving the grids."""

    kind: EpisodeKind
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class _Leg:
    t0: float
    t1: float
    x0: float
    y0: float
    x1: float
    y1: float


class Pose(NamedTuple):
    """Where the officer truly is: metres, speed in m/s, heading in degrees from north."""

    x: float
    y: float
    speed: float
    heading: float


class Walker:
    """An officer patrolling ``graph`` at ``speed`` m/s, interrupted by episodes."""

    def __init__(self, graph: PatrolGraph, rng: random.Random, speed: float) -> None:
        self.graph, self.rng, self.speed = graph, rng, speed
        self.restart(0.0, ())

    def restart(self, t: float, episodes: Sequence[Episode]) -> None:
        """Start a new shift at time ``t`` on a random corner of the grids."""
        self._episodes = sorted(episodes, key=lambda e: e.start)
        self._mode: Literal["patrol", "out", "loiter", "back"] = "patrol"
        self._prev = self._to = self.rng.randrange(len(self.graph.nodes))
        x, y = self.graph.nodes[self._to]
        self._heading = self.rng.uniform(0.0, 360.0)
        self._adopt(_Leg(t, t, x, y, x, y))
        self._anchor = (x, y)
        self._loiter_until = t

    def at(self, t: float) -> Pose:
        """The pose at ``t``; ``t`` must not go backwards by more than the current leg."""
        while t > self._leg.t1:
            self._adopt(self._next_leg())
        leg = self._leg
        span = leg.t1 - leg.t0
        f = 0.0 if span <= 0 else min(1.0, max(0.0, (t - leg.t0) / span))
        x, y = leg.x0 + f * (leg.x1 - leg.x0), leg.y0 + f * (leg.y1 - leg.y0)
        return Pose(x, y, self._speed, self._heading)

    def _adopt(self, leg: _Leg) -> None:
        self._leg = leg
        dx, dy = leg.x1 - leg.x0, leg.y1 - leg.y0
        dist, span = math.hypot(dx, dy), leg.t1 - leg.t0
        self._speed = dist / span if span > 0 else 0.0
        if dist > 0:
            self._heading = math.degrees(math.atan2(dx, dy)) % 360.0

    def _walk(self, t: float, x: float, y: float, tx: float, ty: float, speed: float) -> _Leg:
        return _Leg(t, t + max(math.dist((x, y), (tx, ty)) / speed, 1e-3), x, y, tx, ty)

    def _next_leg(self) -> _Leg:
        t, x, y = self._leg.t1, self._leg.x1, self._leg.y1
        ep = self._episodes[0] if self._episodes else None
        rng = self.rng
        if self._mode == "out":
            assert ep is not None
            self._mode = "loiter"
            self._loiter_until = max(ep.end, t + rng.uniform(300, 600))
        if self._mode == "loiter":
            if t < self._loiter_until:
                ax, ay = self._anchor
                tx, ty = ax + rng.uniform(-40, 40), ay + rng.uniform(-40, 40)
                if rng.random() < 0.4:
                    return _Leg(t, t + rng.uniform(30, 120), x, y, x, y)
                return self._walk(t, x, y, tx, ty, rng.uniform(0.5, 1.0))
            self._mode = "back"
            self._episodes.pop(0)
            self._prev = self._to = self.graph.nearest(x, y)
            return self._walk(t, x, y, *self.graph.nodes[self._to], self.speed)
        self._mode = "patrol"
        if ep is not None and t >= ep.start:
            if ep.kind == "leave":
                angle = rng.uniform(0, 2 * math.pi)
                reach = self.graph.radius + rng.uniform(400, 550)
                cx, cy = self.graph.center
                self._anchor = (cx + reach * math.sin(angle), cy + reach * math.cos(angle))
                self._mode = "out"
                return self._walk(t, x, y, *self._anchor, self.speed)
            self._episodes.pop(0)
            return _Leg(t, max(t, ep.end), x, y, x, y)
        tx, ty = self.graph.nodes[self._to]
        if (x, y) == (tx, ty):
            if rng.random() < 0.15:
                # A short look around at a corner; too brief to look like loafing.
                return _Leg(t, t + rng.uniform(10, 90), x, y, x, y)
            options = [n for n in self.graph.adj[self._to] if n != self._prev]
            options = options or self.graph.adj[self._to] or [self._to]
            self._prev, self._to = self._to, rng.choice(options)
            tx, ty = self.graph.nodes[self._to]
            if (tx, ty) == (x, y):
                return _Leg(t, t + 60.0, x, y, x, y)
        speed = min(1.5, max(1.0, self.speed + rng.gauss(0, 0.08)))
        leg = self._walk(t, x, y, tx, ty, speed)
        if ep is not None and ep.start < leg.t1:
            f = max(0.0, (ep.start - t) / (leg.t1 - t))
            return _Leg(t, max(t, ep.start), x, y, x + f * (tx - x), y + f * (ty - y))
        return leg
