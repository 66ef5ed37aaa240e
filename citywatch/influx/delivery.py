"""Writing lines to InfluxDB in capped requests, and finding the points it refuses.

Every request is capped by points (``influx.batch_size``) and by bytes before gzip
(``influx.max_body``). When InfluxDB answers with an error, the answer says what it
refused:

- 413, the body is over InfluxDB's ``max-body-size``: the request is split in halves and
  each half is sent again, down to single lines;
- 400 (or 2.x's 422) naming points: ``partial write: ...`` (a field type conflict,
  ``max-values-per-tag`` or ``max-series-per-database`` reached, points beyond the retention
  policy) or ``unable to parse ...``. InfluxDB 1.x stores the other points of a partial
  write, and writing an identical point again changes nothing, so the request is bisected
  until each refused point stands alone; the halves that go through are stored. When
  InfluxDB says it dropped every point of a request (``dropped=N`` with N its size), all
  of them are refused without splitting further.

Anything else (network errors, 5xx, a 400 that names no point, such as a retention policy
that does not exist) is a failure of the whole request: the lines not yet written are
handed back, to be retried from the spool.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from citywatch.influx.client import WriteError

GZIP_MAGIC = b"\x1f\x8b"

# What InfluxDB's answer says about the refused points, most specific first; the label
# of citywatch_write_refused_points_total.
_CAUSES = (
    ("max-values-per-tag", "max_values_per_tag"),
    ("max-series-per-database", "max_series_per_database"),
    ("field type conflict", "field_type_conflict"),
    ("beyond retention policy", "beyond_retention"),
    ("unable to parse", "unparsable"),
    ("partial write", "other"),
)
CAUSES = ("too_large", *dict.fromkeys(c for _, c in _CAUSES))
"""Every cause :func:`refusal_cause` can name."""

_DROPPED = re.compile(r"dropped=(\d+)")

Send = Callable[[list[str], bytes | None], Awaitable[None]]
"""Sends lines in one request; the bytes, when given, are those lines already encoded."""


def refusal_cause(exc: WriteError) -> str | None:
    """Why InfluxDB refused points of a request, or None when it refused the request itself."""
    if exc.retryable or exc.status not in (400, 413, 422):
        return None
    if exc.status == 413:
        return "too_large"
    text = exc.detail.lower()
    for marker, cause in _CAUSES:
        if marker in text:
            return cause
    return None


def _refuses_all(exc: WriteError, n: int) -> bool:
    # Parse errors are not counted in ``dropped``, hence only for the other causes.
    if refusal_cause(exc) in (None, "too_large", "unparsable"):
        return False
    m = _DROPPED.search(exc.detail)
    return m is not None and int(m.group(1)) >= n


def line_size(line: str) -> int:
    """Bytes of a line in UTF-8."""
    return len(line) if line.isascii() else len(line.encode())


def chunks(lines: Sequence[str], max_points: int, max_bytes: int) -> list[list[str]]:
    """Consecutive runs of ``lines``, each at most ``max_points`` lines and ``max_bytes``
    bytes joined by newlines (a single longer line makes a run of its own)."""
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for line in lines:
        n = line_size(line)
        if cur and (len(cur) >= max_points or size + 1 + n > max_bytes):
            out.append(cur)
            cur, size = [], 0
        size += n + 1 if cur else n
        cur.append(line)
    if cur:
        out.append(cur)
    return out


def encode(lines: Sequence[str], gzip: bool) -> bytes:
    """A request body: the lines joined by newlines, gzip'd at a fast level if asked."""
    body = "\n".join(lines).encode()
    return zlib.compress(body, 1, wbits=31) if gzip else body


def decode(body: bytes) -> tuple[list[str], int]:
    """The lines of a body (gzip'd or not, told by its first bytes), and its plain size.

    Raises ``ValueError`` for a body that is neither (``zlib.error`` is not one).
    """
    if body[:2] == GZIP_MAGIC:
        try:
            body = zlib.decompress(body, wbits=31)
        except zlib.error as exc:
            raise ValueError(f"not gzip: {exc}") from None
    text = body.decode()  # UnicodeDecodeError is a ValueError
    return [line for line in text.split("\n") if line], len(body)


@dataclass
class Refusal:
    """A line InfluxDB refused, why (one of :data:`CAUSES`), and its answer."""

    line: str
    cause: str
    message: str


@dataclass
class Outcome:
    """What became of the lines handed to :func:`deliver`."""

    written: int = 0
    refused: list[Refusal] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Lines not written when ``error`` stopped delivery, in their order."""
    error: WriteError | None = None
    """The failure of a whole request (retry later); None when every line was handled."""


async def deliver(
    lines: list[str],
    send: Send,
    max_points: int,
    max_bytes: int,
    *,
    body: bytes | None = None,
) -> Outcome:
    """Write ``lines`` in capped requests; find and set aside the lines InfluxDB refuses.

    ``body`` is ``lines`` already encoded, sent as it is if they fit in one request.
    """
    out = Outcome()
    pieces = deque(chunks(lines, max_points, max_bytes))
    encoded = body if len(pieces) == 1 else None
    while pieces:
        piece = pieces.popleft()
        try:
            await send(piece, encoded)
        except WriteError as exc:
            cause = refusal_cause(exc)
            if cause is None:
                out.error = exc
                out.pending = [line for p in (piece, *pieces) for line in p]
                return out
            if len(piece) == 1 or _refuses_all(exc, len(piece)):
                out.refused.extend(Refusal(line, cause, exc.detail) for line in piece)
            else:
                mid = len(piece) // 2
                pieces.extendleft((piece[mid:], piece[:mid]))
        else:
            out.written += len(piece)
        encoded = None
    return out
