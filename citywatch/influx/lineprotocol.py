"""InfluxDB line protocol, escaped so that no value can break a line or add a tag.

Measurement names escape commas and spaces; tag keys, tag values and field keys
escape commas, spaces and equals signs; string field values escape double
quotes and backslashes. Line breaks have no escape in line protocol, so they
become an escaped space in names and the two characters ``\\n`` in strings.
Non-finite floats have no representation in line protocol and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | bool | str

_NAME_TABLE = str.maketrans(
    {",": r"\,", " ": r"\ ", "=": r"\=", "\\": "\\\\", "\n": "\\ ", "\r": "\\ "}
)
_MEAS_TABLE = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\", "\n": "\\ ", "\r": "\\ "})
_STR_TABLE = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})
_NEEDS_NAME_ESCAPE = frozenset(",= \\\n\r")


def escape_name(s: str) -> str:
    """Escape a tag key, tag value or field key."""
    if _NEEDS_NAME_ESCAPE.isdisjoint(s):
        return s
    # Backslashes are doubled too: a trailing one would otherwise escape the separator.
    return s.translate(_NAME_TABLE)


def escape_measurement(s: str) -> str:
    """Escape a measurement name."""
    return s.translate(_MEAS_TABLE)


def quote_string(s: str) -> str:
    """Quote a string field value."""
    return '"' + s.translate(_STR_TABLE) + '"'


def format_field(value: FieldValue) -> str:
    """Format one field value with its line-protocol type marker."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValueError(f"{value!r} cannot be written to InfluxDB")
        return repr(value)
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return f"{value}i"
    if t is str:
        return quote_string(value)  # type: ignore[arg-type]
    raise TypeError(f"unsupported field type {t.__name__}")


def encode(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    ts_ns: int,
) -> str:
    """One line of line protocol; ``None`` fields are left out, empty tags too.

    Tags are sorted by key, as InfluxDB recommends for write performance.
    Raises ``ValueError`` when no field has a value (InfluxDB rejects such lines).
    """
    parts = [escape_measurement(measurement)]
    for k in sorted(tags):
        v = tags[k]
        if v:
            parts.append(f",{escape_name(k)}={escape_name(v)}")
    body = ",".join(
        f"{escape_name(k)}={format_field(v)}"
        for k, v in fields.items()
        if v is not None and not (type(v) is float and not math.isfinite(v))
    )
    if not body:
        raise ValueError(f"{measurement}: a point needs at least one field")
    parts.append(f" {body} {ts_ns}")
    return "".join(parts)
