"""A small InfluxDB HTTP client: write and InfluxQL query, for 1.x and 2.x/3.x.

The official ``influxdb-client`` speaks only the 2.x API (``/api/v2/write``),
which InfluxDB 1.x before 1.8 (Debian ships 1.6) does not have; both write
endpoints are plain HTTP, so this client covers both with aiohttp.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from citywatch.influx.config import InfluxConfig


class WriteError(Exception):
    """A write failed; ``retryable`` says whether sending it again may succeed.

    ``detail`` is InfluxDB's own message when it answered (``partial write: ...``).
    """

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.detail = detail or message


class QueryError(Exception):
    """InfluxDB refused a query or could not be reached."""


class InfluxClient:
    """Writes gzip'd line protocol and runs InfluxQL queries."""

    def __init__(self, cfg: InfluxConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session
        base = cfg.url.rstrip("/")
        self._headers: dict[str, str] = {}
        if cfg.token:
            self._headers["Authorization"] = f"Token {cfg.token}"
        if cfg.v2:
            self._write_url = f"{base}/api/v2/write"
            self._write_params = {
                "org": cfg.org or "",
                "bucket": cfg.bucket or "",
                "precision": "ns",
            }
        else:
            self._write_url = f"{base}/write"
            self._write_params = {"db": cfg.db, "precision": "ns"}
        self._query_url = f"{base}/query"
        self._ping_url = f"{base}/ping"
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        # A probe must not hang for a whole write timeout on a host that drops packets.
        self._ping_timeout = aiohttp.ClientTimeout(total=min(cfg.timeout, 2.0))

    async def write(self, body: bytes, *, gzipped: bool) -> None:
        """POST one batch. 5xx, 401/403/404/429 and network errors are retryable; others not.

        A 400 names what InfluxDB refused (a point or the whole request) and a 413 a body
        over its limit; :mod:`citywatch.influx.delivery` tells them apart.
        """
        headers = dict(self._headers)
        headers["Content-Type"] = "text/plain; charset=utf-8"
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        try:
            async with self.session.post(
                self._write_url,
                params=self._write_params,
                data=body,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                if resp.status < 300:
                    return
                text = _error_text(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteError(
                f"InfluxDB unreachable: {exc or type(exc).__name__}", retryable=True
            ) from None
        # 401/403/404 are configuration problems an operator fixes; keep the data meanwhile.
        retryable = resp.status >= 500 or resp.status in (401, 403, 404, 429)
        raise WriteError(
            f"InfluxDB answered {resp.status}: {text}",
            retryable=retryable,
            status=resp.status,
            detail=text,
        )

    async def ping(self) -> None:
        """``GET /ping`` (1.x and 2.x): raises :class:`WriteError` unless InfluxDB answers 2xx.

        It says InfluxDB is up, not that a write would be accepted (database, token).
        """
        try:
            async with self.session.get(
                self._ping_url, headers=self._headers, timeout=self._ping_timeout
            ) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteError(
                f"InfluxDB unreachable: {exc or type(exc).__name__}", retryable=True
            ) from None
        if resp.status >= 300:
            raise WriteError(
                f"InfluxDB answered {resp.status} to /ping", retryable=True, status=resp.status
            )

    async def query(
        self, q: str, *, db: str | None = None, method: str = "GET"
    ) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``results`` list. Raises :class:`QueryError`."""
        params = {"q": q, "db": db or self.cfg.db or self.cfg.bucket or "", "epoch": "ns"}
        try:
            async with self.session.request(
                method, self._query_url, params=params, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise QueryError(f"InfluxDB unreachable: {exc or type(exc).__name__}") from None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise QueryError(f"InfluxDB answered {resp.status}: {raw[:200]!r}") from None
        if resp.status >= 300 or "error" in doc:
            raise QueryError(str(doc.get("error") or doc))
        results: list[dict[str, Any]] = doc.get("results", [])
        for r in results:
            if "error" in r:
                raise QueryError(str(r["error"]))
        return results

    async def create_database(self) -> None:
        """Create the 1.x database if missing (a no-op for 2.x/3.x buckets)."""
        if self.cfg.v2:
            return
        name = self.cfg.db.replace("\\", "\\\\").replace('"', '\\"')
        await self.query(f'CREATE DATABASE "{name}"', method="POST")


def _error_text(raw: bytes) -> str:
    """InfluxDB's message: ``{"error": ...}`` (1.x), ``{"message": ...}`` (2.x), or the text."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        msg = doc.get("error") or doc.get("message")
        if isinstance(msg, str) and msg:
            return msg[:1000]
    return raw[:1000].decode(errors="replace").strip()
