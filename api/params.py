"""Query parameters and bodies, checked: a bad value is a 400 that names the parameter."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web

from api.errors import ApiError

T = TypeVar("T")
CITY = re.compile(r"[0-9]{6}").fullmatch
GRID_PREFIX = re.compile(r"[0-9]{1,15}").fullmatch
ID = re.compile(r"[A-Za-z0-9_.-]{1,64}").fullmatch
# Control, bidi/zero-width format and line/paragraph separator characters: text shown to
# people and written to logs and MQTT must not carry them. The OpenAPI document states the
# rule as a pattern (``TEXT_PATTERN``); lone surrogates (from JSON \u escapes) are not text
# either, and are refused too.
UNSHOWABLE = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
TEXT_PATTERN = f"^[^{UNSHOWABLE}]*$"
_SHOWABLE = re.compile(f"[^{UNSHOWABLE}\\ud800-\\udfff]*").fullmatch


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, f"parameter {name!r} given {len(values)} times")
    if values and values[0] == "":
        raise ApiError(400, f"parameter {name!r} is empty: give a value or leave it out")
    return values[0] if values else None


def showable(value: str) -> bool:
    """No control, format, separator or surrogate characters (``TEXT_PATTERN``)."""
    return _SHOWABLE(value) is not None


def text(
    request: web.Request, name: str, check: Callable[[str], Any] | None = None, what: str = ""
) -> str | None:
    """A string parameter, matched by ``check`` when given."""
    value = _one(request, name)
    if value is None or value == "":
        return None
    if check is not None and not check(value):
        raise ApiError(400, f"parameter {name!r}: {value[:64]!r} is not {what or 'valid'}")
    return value


def choice(request: web.Request, name: str, choices: Sequence[str]) -> str | None:
    value = _one(request, name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise ApiError(400, f"parameter {name!r} must be one of {', '.join(choices)}")
    return value


def choices(request: web.Request, name: str, allowed: Sequence[str]) -> frozenset[str] | None:
    """A comma-separated list of allowed values (``status=firing,acknowledged``)."""
    value = _one(request, name)
    if value is None:
        return None
    items = value.split(",")
    if not set(items) <= set(allowed):
        raise ApiError(
            400, f"parameter {name!r} must be a comma-separated list of {', '.join(allowed)}"
        )
    return frozenset(items)


def integer(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    value = _one(request, name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"parameter {name!r} must be an integer") from None
    if not lo <= n <= hi:
        raise ApiError(400, f"parameter {name!r} must be between {lo} and {hi}")
    return n


def instant(request: web.Request, name: str) -> float | None:
    """A time: Unix seconds, or ISO 8601 with an offset (``2026-11-22T08:00:00+08:00``)."""
    value = _one(request, name)
    if value is None or value == "":
        return None
    return parse_instant(value, f"parameter {name!r}")


def parse_instant(value: object, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = float(value)
    elif isinstance(value, str):
        t = _from_text(value, what)
    else:
        raise ApiError(400, f"{what}: expected Unix seconds or ISO 8601")
    if not 946_684_800 <= t <= 4_102_444_800:  # 2000 .. 2100
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


def page(request: web.Request, page_max: int) -> tuple[int, int]:
    """``limit`` (default 100) and ``offset``."""
    limit = integer(request, "limit", min(100, page_max), 1, page_max)
    offset = integer(request, "offset", 0, 0, 10_000_000)
    return limit, offset


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


def field(doc: dict[str, Any], name: str, kind: type[T], required: bool = False) -> T | None:
    """A body field of ``kind`` (str, int, float, list, dict); 400 naming it otherwise."""
    if name not in doc or doc[name] is None:
        if required:
            raise ApiError(400, f"field {name!r} is required")
        return None
    value = doc[name]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ApiError(400, f"field {name!r} must be {kind.__name__}")
    return value  # type: ignore[no-any-return]
