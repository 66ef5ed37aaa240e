"""How a token's cities and grids bound a route: one rule per route, in :mod:`api.routes`.

A token scoped to cities and grid prefixes (:class:`api.auth.Principal`) sees and acts
on only what lies there. Each route names how: the guard (:mod:`api.guard`) applies
the rule's :meth:`Scope.check` to the parsed parameters before the handler runs, and
the OpenAPI document states the rule's ``doc``. What can only be judged item by item
(an alert's city and grid) is judged by the handler with :meth:`Principal.sees`, as
the rule :data:`ITEMS` says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError

Args = Mapping[str, Any]


class Scope:
    """A route's scope rule: what it checks before the handler, and what it says."""

    name: str = ""
    doc: str = ""

    def check(self, who: Principal, args: Args) -> None:
        """Raise 403 when ``who`` may not make this call with ``args``."""


@dataclass(frozen=True)
class Items(Scope):
    """Item by item: those outside the scope are left out of lists, and 404 when named."""

    name: str = "items"
    doc: str = (
        "A scoped token sees only what lies in its cities and grids: the rest is left out "
        "of lists, and answers 404 when named."
    )


@dataclass(frozen=True)
class PerCity(Scope):
    """What is kept per city (and unit), never per grid: grid-scoped tokens are refused."""

    why: str
    name: str = "cities"
    doc: str = (
        "Kept per city: a token scoped to grids gets 403; one scoped to cities sees only those."
    )

    def check(self, who: Principal, args: Args) -> None:
        if who.grids:
            raise ApiError(403, f"token {who.name!r} is scoped to grids; {self.why}")


@dataclass(frozen=True)
class Pins(Scope):
    """The call must pin a city and a grid (prefix) within the scope: ``find`` reads them."""

    find: Callable[[Args], tuple[str | None, str | None]]
    how: str
    name: str = "pins"
    doc: str = "A scoped token must pin city and grid within its scope (403 otherwise)."

    def check(self, who: Principal, args: Args) -> None:
        if not who.cities and not who.grids:
            return
        city, grid = self.find(args)
        if who.cities and city not in who.cities:
            raise ApiError(
                403, f"token {who.name!r} must pin city to one of {', '.join(who.cities)}"
            )
        if who.grids and (grid is None or not any(grid.startswith(g) for g in who.grids)):
            raise ApiError(
                403,
                f"token {who.name!r} must pin grid ({self.how}) within {', '.join(who.grids)}",
            )


ITEMS = Items()
