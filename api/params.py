"""Parameters, declared once: each kind is both the JSON Schema and the check of a value.

A route in :mod:`api.routes` lists its :class:`Param` s (in the path, the query or
the JSON body), each with a :class:`Kind`. The guard (:mod:`api.guard`) reads and
checks every value with the kind's :meth:`Kind.parse` and calls the route's handler
with the typed results as keyword arguments; the OpenAPI document
(:mod:`api.openapi`) states each with the kind's :meth:`Kind.schema`. A bad value is
a 400 that names the parameter (or, for an id in the path, says which id).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import orjson
from aiohttp import web

from citywatch.alerting.silences import MAX_MATCHERS, Matcher, SilenceError
from citywatch.api.config import ApiConfig
from citywatch.api.errors import ApiError

T = TypeVar("T")
Where = Literal["path", "query", "body"]
CITY = r"[0-9]{6}"
GRID_PREFIX = r"[0-9]{1,15}"
ID = r"[A-Za-z0-9_.-]{1,64}"
_ID = re.compile(ID).fullmatch
# Control, bidi/zero-width format and line/paragraph separator characters: text shown to
# people and written to logs and MQTT must not carry them. The OpenAPI document states the
# rule as a pattern (``TEXT_PATTERN``); lone surrogates (from JSON \u escapes) are not text
# either, and are refused too.
UNSHOWABLE = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
TEXT_PATTERN = f"^[^{UNSHOWABLE}]*$"
# Text that also says something: not only spaces.
SAID_PATTERN = f"^[^{UNSHOWABLE}]*[^{UNSHOWABLE}\\s][^{UNSHOWABLE}]*$"
_SHOWABLE = re.compile(f"[^{UNSHOWABLE}\\ud800-\\udfff]*").fullmatch
EARLIEST, LATEST = 946_684_800, 4_102_444_800  # 2000 .. 2100
_MONTH = re.compile(r"(20[0-9]{2})-(0[1-9]|1[0-2])").fullmatch


def showable(value: str) -> bool:
    """No control, format, separator or surrogate characters (``TEXT_PATTERN``)."""
    return _SHOWABLE(value) is not None


def _pattern(regex: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{regex}$"}


class Kind(ABC, Generic[T]):
    """How a parameter's value is checked and converted, and how the document states it.

    ``value`` is the text of a path or query parameter, or the JSON value of a body
    field; ``what`` names it in messages (``parameter 'city'``, ``field 'note'``, or
    a path parameter's description, ``alert id``).
    """

    py_type: ClassVar[Any] = object
    """The Python type the handler gets (``str | None`` when optional, without a default)."""
    example: Any = None
    """A valid value, as sent: tests call every route with it."""

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the value, as sent."""

    @abstractmethod
    def parse(self, value: Any, what: str) -> T:
        """The value, checked and converted; ApiError (400 naming ``what``) otherwise."""

    def configured(self, cfg: ApiConfig) -> Kind[T]:
        """This kind with bounds from the configuration (a page's size): itself by default."""
        return self


@dataclass(frozen=True)
class Text(Kind[str]):
    """Text matching ``pattern`` (or only bounded by ``most`` characters); ``what`` says what."""

    what: str
    pattern: str | None = None
    most: int | None = 64
    example: str = "x"
    py_type: ClassVar[Any] = str

    @functools.cached_property
    def _match(self) -> Callable[[str], Any] | None:
        return None if self.pattern is None else re.compile(self.pattern).fullmatch

    def schema(self) -> dict[str, Any]:
        if self.pattern is not None:
            return _pattern(self.pattern)
        s: dict[str, Any] = {"type": "string", "minLength": 1}
        return s if self.most is None else s | {"maxLength": self.most}

    def parse(self, value: Any, what: str) -> str:
        match = self._match
        ok = match(value) if match is not None else self.most is None or len(value) <= self.most
        if not ok:
            raise ApiError(400, f"{what}: {value[:64]!r} is not {self.what}")
        return str(value)


@dataclass(frozen=True)
class Ident(Kind[str]):
    """An id in the path: letters, digits and ``_.-``, at most 64."""

    example: str = "dev-1"
    py_type: ClassVar[Any] = str

    def schema(self) -> dict[str, Any]:
        return _pattern(ID)

    def parse(self, value: Any, what: str) -> str:
        if not _ID(value):
            raise ApiError(400, f"{what} must match {ID}")
        return str(value)


@dataclass(frozen=True)
class Serial(Kind[int]):
    """A numeric id in the path (an alert's)."""

    digits: int = 12
    example: str = "1"
    py_type: ClassVar[Any] = int

    def schema(self) -> dict[str, Any]:
        return _pattern(f"[0-9]{{1,{self.digits}}}")

    def parse(self, value: Any, what: str) -> int:
        # ASCII digits only: str.isdigit() also takes superscripts, which int() does not.
        if not re.fullmatch(f"[0-9]{{1,{self.digits}}}", value):
            raise ApiError(400, f"{what} must be a positive integer, got {value[:20]!r}")
        return int(value)


@dataclass(frozen=True)
class Known(Kind[str]):
    """An id in the path whose shape is fixed: one of another shape names nothing (404)."""

    pattern: str
    noun: str
    example: str = ""
    py_type: ClassVar[Any] = str

    def schema(self) -> dict[str, Any]:
        return _pattern(self.pattern)

    def parse(self, value: Any, what: str) -> str:
        if not re.fullmatch(self.pattern, value):
            raise ApiError(404, f"no {self.noun} {value[:40]}")
        return str(value)


@dataclass(frozen=True)
class OneOf(Kind[str]):
    """One of ``values``."""

    values: tuple[str, ...]
    py_type: ClassVar[Any] = str

    @property
    def example(self) -> str:
        return self.values[0]

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}

    def parse(self, value: Any, what: str) -> str:
        if value not in self.values:
            raise ApiError(400, f"{what} must be one of {', '.join(self.values)}")
        return str(value)


@dataclass(frozen=True)
class Flag(Kind[bool]):
    """``true`` or ``false``."""

    example: str = "true"
    py_type: ClassVar[Any] = bool

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": ["true", "false"]}

    def parse(self, value: Any, what: str) -> bool:
        if value not in ("true", "false"):
            raise ApiError(400, f"{what} must be one of true, false")
        return bool(value == "true")


@dataclass(frozen=True)
class AnyOf(Kind[frozenset[str]]):
    """A comma-separated list of ``values`` (``status=firing,acknowledged``)."""

    values: tuple[str, ...]
    py_type: ClassVar[Any] = frozenset[str]

    @property
    def example(self) -> str:
        return ",".join(self.values[:2])

    def schema(self) -> dict[str, Any]:
        alt = "|".join(self.values)
        return {"type": "string", "pattern": f"^({alt})(,({alt}))*$"}

    def parse(self, value: Any, what: str) -> frozenset[str]:
        items = frozenset(value.split(","))
        if not items <= frozenset(self.values):
            raise ApiError(
                400, f"{what} must be a comma-separated list of {', '.join(self.values)}"
            )
        return items


@dataclass(frozen=True)
class Integer(Kind[int]):
    """An integer from ``lo`` to ``hi``."""

    lo: int
    hi: int
    py_type: ClassVar[Any] = int

    @property
    def example(self) -> str:
        return str(self.lo)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}

    def parse(self, value: Any, what: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise ApiError(400, f"{what} must be an integer") from None
        if not self.lo <= n <= self.hi:
            raise ApiError(400, f"{what} must be between {self.lo} and {self.hi}")
        return n


@dataclass(frozen=True)
class PageSize(Integer):
    """A page's size: at most ``api.page_max``."""

    def configured(self, cfg: ApiConfig) -> Kind[int]:
        return dataclasses.replace(self, hi=cfg.page_max)


@dataclass(frozen=True)
class Instant(Kind[float]):
    """A time: Unix seconds, or ISO 8601 with an offset (``2026-11-22T08:00:00+08:00``)."""

    example: str = "2026-11-22T08:00:00+08:00"
    py_type: ClassVar[Any] = float

    def schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "number", "minimum": EARLIEST, "maximum": LATEST},
                {"type": "string", "format": "date-time"},
            ],
            "description": "Unix seconds or ISO 8601 with an offset, 2000 to 2100",
        }

    def parse(self, value: Any, what: str) -> float:
        return parse_instant(value, what)


@dataclass(frozen=True)
class Month(Kind[tuple[int, int]]):
    """A month, ``2026-11``: (year, month)."""

    example: str = "2026-11"
    py_type: ClassVar[Any] = tuple[int, int]

    def schema(self) -> dict[str, Any]:
        return _pattern("20[0-9]{2}-(0[1-9]|1[0-2])")

    def parse(self, value: Any, what: str) -> tuple[int, int]:
        m = _MONTH(value)
        if not m:
            raise ApiError(400, f"{what} must be a month from 2000-01 to 2099-12")
        return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class Words(Kind[str]):
    """Text in a body, shown to people: ``least`` to ``most`` characters, no control ones.

    ``said``: it must also say something (not only spaces).
    """

    least: int
    most: int
    said: bool = False
    example: str = "x"
    py_type: ClassVar[Any] = str

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "type": "string",
            "pattern": SAID_PATTERN if self.said else TEXT_PATTERN,
            "minLength": self.least,
            "maxLength": self.most,
        }
        if not self.least:
            del s["minLength"]
        return s

    def parse(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise ApiError(400, f"{what} must be str")
        if not self.least <= len(value) <= self.most or not showable(value):
            size = f"{self.least}-{self.most}" if self.least else f"at most {self.most}"
            raise ApiError(400, f"{what} must be {size} characters, no control characters")
        if self.said and not value.strip():
            raise ApiError(400, f"{what} must say something, not only spaces")
        return value


MATCHER_SCHEMA = "Matcher"


@dataclass(frozen=True)
class Matchers(Kind[tuple[Matcher, ...]]):
    """A silence's matchers: objects with ``name``, ``value`` and ``op`` (default ``=``)."""

    most: int = MAX_MATCHERS
    py_type: ClassVar[Any] = tuple[Matcher, ...]

    @property
    def example(self) -> list[dict[str, str]]:
        return [{"name": "city", "value": "321200"}]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": self.most,
            "items": {"$ref": f"#/components/schemas/{MATCHER_SCHEMA}"},
        }

    def parse(self, value: Any, what: str) -> tuple[Matcher, ...]:
        if not isinstance(value, list):
            raise ApiError(400, f"{what} must be list")
        if not 0 < len(value) <= self.most:
            raise ApiError(400, f"{what} must hold 1 to {self.most} matchers")
        matchers = []
        for i, m in enumerate(value):
            if not isinstance(m, dict) or set(m) - {"name", "value", "op"}:
                raise ApiError(400, f"matchers[{i}] must be an object with name, value, op")
            name, text, op = m.get("name"), m.get("value"), m.get("op", "=")
            if not (isinstance(name, str) and isinstance(text, str) and isinstance(op, str)):
                raise ApiError(400, f"matchers[{i}]: name, value and op must be strings")
            try:
                matchers.append(Matcher(name, text, op))
            except SilenceError as exc:
                raise ApiError(400, str(exc)) from None
        return tuple(matchers)


@dataclass(frozen=True)
class Param(Generic[T]):
    """One parameter of a route: its name, where it is, its kind and its meaning.

    The handler gets it as the keyword argument ``arg`` (``name`` unless that is not
    a Python name, like ``from``): the parsed value, or ``default`` when it is absent.
    A ``required`` one that is absent is a 400 (a path parameter is always there).
    """

    name: str
    kind: Kind[T]
    description: str
    where: Where = "query"
    required: bool = False
    default: T | None = None
    arg: str = ""

    def __post_init__(self) -> None:
        if not self.arg:
            object.__setattr__(self, "arg", self.name)
        if self.where == "path":
            object.__setattr__(self, "required", True)

    @functools.cached_property
    def what(self) -> str:
        """How messages name it."""
        if self.where == "path":
            return self.description
        return f"{'field' if self.where == 'body' else 'parameter'} {self.name!r}"

    @property
    def py_type(self) -> Any:
        """The handler's annotation for it."""
        if self.required or self.default is not None:
            return self.kind.py_type
        return self.kind.py_type | None

    def configured(self, cfg: ApiConfig) -> Param[T]:
        kind = self.kind.configured(cfg)
        return self if kind is self.kind else dataclasses.replace(self, kind=kind)

    def read(self, raw: Any) -> T | None:
        """The value to hand on from ``raw`` (None: absent)."""
        if raw is None:
            if self.required:
                raise ApiError(400, f"{self.what} is required")
            return self.default
        return self.kind.parse(raw, self.what)


def query_value(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once, not empty; None when absent."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"parameter {name!r} given {len(values)} times")
    if values[0] == "":
        raise ApiError(400, f"parameter {name!r} is empty: give a value or leave it out")
    return values[0]


def parse_instant(value: object, what: str) -> float:
    """Unix seconds or ISO 8601 with an offset, from 2000 to 2100."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = float(value)
    elif isinstance(value, str):
        t = _from_text(value, what)
    else:
        raise ApiError(400, f"{what}: expected Unix seconds or ISO 8601")
    if not EARLIEST <= t <= LATEST:
        raise ApiError(400, f"{what}: out of range")
    return t


def _from_text(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{what}: expected Unix seconds or ISO 8601") from None
    if dt.tzinfo is None:
        raise ApiError(400, f"{what}: an ISO 8601 time needs an offset (+08:00 or Z)")
    return dt.timestamp()


def paginate(
    items: Iterable[T], limit: int, offset: int, render: Callable[[T], Any] | None = None
) -> dict[str, Any]:
    """The list envelope: ``items``, ``total``, ``limit``, ``offset``, ``next``.

    ``render`` turns an item into its JSON form, for the page's items only: a page of
    100 from 10,000 matches costs 100 renderings, not 10,000.
    """
    everything = list(items)
    chunk: list[Any] = everything[offset : offset + limit]
    if render is not None:
        chunk = [render(x) for x in chunk]
    nxt = offset + limit if offset + limit < len(everything) else None
    return {"items": chunk, "total": len(everything), "limit": limit, "offset": offset, "next": nxt}


def respond(doc: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded with orjson (several times faster than the json module)."""
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 415/400 when it is not one (a missing body included)."""
    if request.content_type != "application/json":
        raise ApiError(415, "a JSON body is required (Content-Type: application/json)")
    try:
        raw = await request.read()
        doc = orjson.loads(raw)  # depth-limited, unlike json.loads (RecursionError)
    except web.HTTPRequestEntityTooLarge:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object")
    return doc
