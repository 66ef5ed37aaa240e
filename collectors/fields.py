"""Field checks shared by the decoders; each raises :class:`Reject` naming the field."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import orjson

from citywatch.collectors.reject import Reject
from citywatch.config import ConfigError, parse_duration

Obj = dict[str, Any]
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}").fullmatch


def parse_json(payload: bytes) -> Any:
    """Decode a JSON payload, telling bad UTF-8 apart from bad JSON."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise Reject("bad_utf8", f"payload is not valid UTF-8 at byte {uexc.start}") from None
        raise Reject("malformed_json", f"payload is not valid JSON: {exc}") from None


def expect_object(body: Any, what: str) -> Obj:
    if type(body) is not dict:
        raise Reject("wrong_type", f"{what}: expected a JSON object, got {_json_type(body)}")
    return body


def number(obj: Obj, key: str, lo: float, hi: float, *, required: bool = False) -> float | None:
    """A finite number within [lo, hi]; booleans are not numbers."""
    v = obj.get(key)
    t = type(v)
    if t is float or t is int:
        x = float(v)  # type: ignore[arg-type]
        if not lo <= x <= hi:  # also false for NaN
            raise Reject("out_of_range", f"{key}: {v!r} is outside [{lo:g}, {hi:g}]")
        return x
    if v is None:
        _absent(key, required)
        return None
    raise Reject("wrong_type", f"{key}: expected a number, got {_json_type(v)}")


def integer(obj: Obj, key: str, lo: int, hi: int) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if type(v) is not int:
        if type(v) is float and v.is_integer():
            v = int(v)
        else:
            raise Reject("wrong_type", f"{key}: expected an integer, got {_json_type(v)}")
    if not lo <= v <= hi:
        raise Reject("out_of_range", f"{key}: {v} is outside [{lo}, {hi}]")
    return v


def boolean(obj: Obj, key: str) -> bool | None:
    v = obj.get(key)
    if v is None or type(v) is bool:
        return v
    raise Reject("wrong_type", f"{key}: expected true or false, got {_json_type(v)}")


def text(obj: Obj, key: str, max_len: int = 64, *, required: bool = False) -> str | None:
    """A printable string of at most ``max_len`` characters."""
    v = _string(obj, key, required)
    if v is None:
        return None
    if not 0 < len(v) <= max_len:
        raise Reject("out_of_range", f"{key}: length {len(v)} is outside [1, {max_len}]")
    if not v.isprintable():
        raise Reject("out_of_range", f"{key}: contains control characters")
    return v


def ident(obj: Obj, key: str, *, required: bool = False) -> str | None:
    """An id matching ``[A-Za-z0-9_.-]{1,64}``."""
    v = _string(obj, key, required, "a string id")
    if v is None:
        return None
    if not _ID(v):
        raise Reject("bad_id", f"{key}: {v[:80]!r} must match [A-Za-z0-9_.-]{{1,64}}")
    return v


def choice(obj: Obj, key: str, allowed: frozenset[str], *, required: bool = False) -> str | None:
    v = _string(obj, key, required)
    if v is None:
        return None
    if v not in allowed:
        raise Reject(
            "unknown_value", f"{key}: {v[:80]!r} is not one of {', '.join(sorted(allowed))}"
        )
    return v


def timestamp(obj: Obj, key: str, now: float, max_future: float, max_age: float) -> float:
    """``ts`` as RFC 3339 with an offset, or Unix epoch seconds; checked against ``now``."""
    v = obj.get(key)
    t = type(v)
    if t is str:
        try:
            dt = datetime.fromisoformat(v)  # type: ignore[arg-type]
        except ValueError:
            raise Reject("bad_timestamp", f"{key}: {v[:64]!r} is not RFC 3339") from None  # type: ignore[index]
        if dt.tzinfo is None:
            raise Reject("bad_timestamp", f"{key}: {v[:64]!r} has no UTC offset")  # type: ignore[index]
        ts = dt.timestamp()
    elif t is float or t is int:
        ts = float(v)  # type: ignore[arg-type]
        if not math.isfinite(ts):
            raise Reject("bad_timestamp", f"{key}: not a finite number")
    elif v is None:
        raise Reject("missing_field", f"{key}: required")
    else:
        raise Reject(
            "wrong_type", f"{key}: expected RFC 3339 text or epoch seconds, got {_json_type(v)}"
        )
    if ts > now + max_future:
        raise Reject(
            "future_timestamp", f"{key}: {ts - now:.0f}s in the future (limit {max_future:.0f}s)"
        )
    if ts < now - max_age:
        raise Reject("stale_timestamp", f"{key}: {now - ts:.0f}s old (limit {max_age:.0f}s)")
    return ts


def timestamp_or_now(obj: Obj, key: str, now: float, max_future: float, max_age: float) -> float:
    """``key`` checked as by :func:`timestamp` when present; ``now`` (the receive time) when not."""
    return timestamp(obj, key, now, max_future, max_age) if key in obj else now


def duration_field(obj: Obj, key: str, *, required: bool = False) -> float | None:
    """A duration like ``2h`` or a number of seconds, positive."""
    v = obj.get(key)
    if v is None:
        _absent(key, required)
        return None
    if type(v) is bool or not isinstance(v, int | float | str):
        raise Reject("wrong_type", f"{key}: expected a duration like 2h, got {_json_type(v)}")
    try:
        seconds = parse_duration(v, key)
    except ConfigError as exc:
        reason = "out_of_range" if not isinstance(v, str) else "wrong_type"
        raise Reject(reason, f"{key}: {exc.problem}") from None
    if not 0 < seconds <= 366 * 86400:
        raise Reject("out_of_range", f"{key}: {v!r} must be positive and at most a year")
    return seconds


def _absent(key: str, required: bool) -> None:
    """An absent field: rejected when it is ``required``."""
    if required:
        raise Reject("missing_field", f"{key}: required")


def _string(obj: Obj, key: str, required: bool, what: str = "a string") -> str | None:
    """``obj[key]`` when a string, None when absent (and not ``required``)."""
    v = obj.get(key)
    if v is None:
        _absent(key, required)
        return None
    if type(v) is not str:
        raise Reject("wrong_type", f"{key}: expected {what}, got {_json_type(v)}")
    return v


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(v), type(v).__name__)
