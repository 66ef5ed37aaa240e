"""Who patrols where: cells in metres, officers, their grids and behaviours.

Officers come in inspector/enforcer pairs, pairs are dealt to communities in
turn, and each officer gets 4-9 adjacent cells of their community. The
behaviours that exercise citywatch's rules (idling, leaving the grids, going
offline, losing GPS) go to disjoint sets of officers while there are enough
of them; reporting datum (GCJ-02, BD-09) is assigned independently.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from citywatch.simulate.config import SimConfig
from citywatch.simulate.walk import LocalProjection

MOVEMENT = ("idle", "leave_grid", "offline", "gps_lost")
"""Behaviours that change where an officer goes or what the handheld sends."""


@dataclass(frozen=True, slots=True)
class Cell:
    """A grid cell with its box in local metres."""

    code: str
    street: str
    community: str
    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y) lies in the cell, edges included."""
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def random_point(self, rng: random.Random) -> tuple[float, float]:
        """A uniformly random point inside the cell."""
        return rng.uniform(self.x0, self.x1), rng.uniform(self.y0, self.y1)


@dataclass(frozen=True, slots=True)
class Officer:
    """An officer and their handheld.

    ``behaviours`` names what the simulation makes this officer do:
    ``idle``, ``leave_grid``, ``offline`` (with ``buffer`` if fixes taken
    offline are uploaded later), ``gps_lost``, ``break``, and ``gcj02`` or
    ``bd09`` for the datum the handheld reports in.
    """

    officer: str
    device: str
    role: str
    community: str
    grids: tuple[str, ...]
    lead: str
    crs: str
    behaviours: tuple[str, ...]


@dataclass(frozen=True)
class Crew:
    """The district's cells and the officers patrolling it."""

    projection: LocalProjection
    cells: dict[str, Cell]
    officers: tuple[Officer, ...]

    def cell_at(self, x: float, y: float) -> Cell | None:
        """The cell containing (x, y), if any."""
        return next((c for c in self.cells.values() if c.contains(x, y)), None)

    def enforcers(self, community: str) -> list[Officer]:
        """Enforcers of ``community``, or every enforcer if it has none."""
        all_enforcers = [o for o in self.officers if o.role == "enforcer"]
        return [o for o in all_enforcers if o.community == community] or all_enforcers


def _read_cells(fc: Mapping[str, Any]) -> tuple[LocalProjection, dict[str, Cell]]:
    boxes: dict[str, tuple[str, str, tuple[float, float, float, float]]] = {}
    for feature in fc["features"]:
        props = feature["properties"]
        ring = feature["geometry"]["coordinates"][0]
        xs, ys = [float(p[0]) for p in ring], [float(p[1]) for p in ring]
        box = (min(xs), min(ys), max(xs), max(ys))
        boxes[str(props["code"])] = (str(props["street"]), str(props["community"]), box)
    if not boxes:
        raise ValueError("the grid has no cells")
    lon0 = (min(b[0] for *_, b in boxes.values()) + max(b[2] for *_, b in boxes.values())) / 2
    lat0 = (min(b[1] for *_, b in boxes.values()) + max(b[3] for *_, b in boxes.values())) / 2
    proj = LocalProjection(lon0, lat0)
    cells = {}
    for code in sorted(boxes):
        street, community, (w, s, e, n) = boxes[code]
        x0, y0 = proj.to_m(w, s)
        x1, y1 = proj.to_m(e, n)
        cells[code] = Cell(code, street, community, x0, y0, x1, y1)
    return proj, cells


def _neighbours(cells: list[Cell]) -> dict[str, set[str]]:
    by_corner: dict[tuple[float, float], list[str]] = defaultdict(list)
    for c in cells:
        for x, y in ((c.x0, c.y0), (c.x1, c.y0), (c.x1, c.y1), (c.x0, c.y1)):
            by_corner[(round(x, 2), round(y, 2))].append(c.code)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for codes in by_corner.values():
        for a in codes:
            for b in codes:
                if a != b:
                    shared[(a, b)] += 1
    result: dict[str, set[str]] = {c.code: set() for c in cells}
    for (a, b), n in shared.items():
        if n >= 2:
            result[a].add(b)
    return result


def _grow_region(rng: random.Random, cells: list[Cell], size: int) -> tuple[str, ...]:
    nbrs = _neighbours(cells)
    region = [rng.choice(cells).code]
    frontier = set(nbrs[region[0]])
    while len(region) < size and frontier:
        code = rng.choice(sorted(frontier))
        region.append(code)
        frontier |= nbrs[code]
        frontier -= set(region)
    return tuple(sorted(region))


def _lead(community: str, index: int) -> str:
    if len(community) == 12 and community.isdigit():
        return f"lead-{community[6:9]}{community[9:12]}"
    return f"lead-{index + 1:06d}"


def _count(share: float, n: int) -> int:
    return int(share * n + 0.5)


def build_crew(config: SimConfig, fc: Mapping[str, Any]) -> Crew:
    """Lay out ``config.devices`` officers over the cells of ``fc``."""
    proj, cells = _read_cells(fc)
    by_community: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells.values():
        by_community[cell.community].append(cell)
    communities = sorted(by_community)
    rng = random.Random(f"{config.seed}/crew")
    n = config.devices

    behaviours: list[list[str]] = [[] for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    taken = 0
    for name in MOVEMENT:
        for k in range(_count(getattr(config, f"{name}_share"), n)):
            i = order[taken % n]
            behaviours[i].append(name)
            if name == "offline" and k % 2 == 0:
                behaviours[i].append("buffer")
            taken += 1
    calm = order[taken:]
    for i in calm[: len(calm) // 4]:
        behaviours[i].append("break")
    rng.shuffle(order)
    n_gcj, n_bd = _count(config.gcj02_share, n), _count(config.bd09_share, n)
    crs = ["wgs84"] * n
    for i in order[:n_gcj]:
        crs[i] = "gcj02"
    for i in order[n_gcj : n_gcj + n_bd]:
        crs[i] = "bd09"

    officers = []
    for i in range(n):
        index = (i // 2) % len(communities)
        community = communities[index]
        members = by_community[community]
        grids = _grow_region(rng, members, min(rng.randint(4, 9), len(members)))
        tags = behaviours[i] + ([crs[i]] if crs[i] != "wgs84" else [])
        officers.append(
            Officer(
                officer=f"off-{i + 1:04d}",
                device=f"dev-{i + 1:04d}",
                role="inspector" if i % 2 == 0 else "enforcer",
                community=community,
                grids=grids,
                lead=_lead(community, index),
                crs=crs[i],
                behaviours=tuple(tags),
            )
        )
    return Crew(proj, cells, tuple(officers))
