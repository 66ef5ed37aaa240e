"""A bounded, crash-safe, first-in-first-out queue of batches on disk.

Each batch is one file, written to a temporary name, flushed to disk and then
renamed, so a crash leaves either the whole batch or nothing. Files are named
by a sequence number; replay takes the lowest first.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".lp"


class SpoolFull(Exception):
    """The spool has reached its size limit (or the disk is full)."""


class Spool:
    """Batches of line protocol (possibly gzip'd) waiting for InfluxDB."""

    def __init__(self, directory: Path, max_bytes: int, *, fsync: bool = True) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self._segments: list[tuple[int, int]] = sorted(
            (int(p.stem), p.stat().st_size)
            for p in self.dir.glob(f"*{_SUFFIX}")
            if p.stem.isdigit()
        )
        self.bytes = sum(s for _, s in self._segments)
        self._next = self._segments[-1][0] + 1 if self._segments else 1

    def __len__(self) -> int:
        return len(self._segments)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{_SUFFIX}"

    def append(self, body: bytes) -> None:
        """Store one batch durably. Raises :class:`SpoolFull` when it does not fit."""
        if self.bytes + len(body) > self.max_bytes:
            raise SpoolFull(f"spool holds {self.bytes} bytes, limit {self.max_bytes}")
        seq = self._next
        path = self._path(seq)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolFull(f"cannot write to the spool: {exc.strerror or exc}") from exc
        # The rename is the commit point: from here on the batch is in the spool.
        if self.fsync:
            try:
                self._sync_dir()
            except OSError as exc:
                log.warning("spool directory sync failed: %s", exc)
        self._next = seq + 1
        self._segments.append((seq, len(body)))
        self.bytes += len(body)

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest batch, without removing it."""
        while self._segments:
            seq, _ = self._segments[0]
            try:
                return seq, self._path(seq).read_bytes()
            except FileNotFoundError:
                self._pop(seq)
        return None

    def remove(self, seq: int) -> None:
        """Remove a replayed batch."""
        self._path(seq).unlink(missing_ok=True)
        self._pop(seq)

    def _pop(self, seq: int) -> None:
        for i, (s, n) in enumerate(self._segments):
            if s == seq:
                del self._segments[i]
                self.bytes -= n
                return

    def writable(self) -> bool:
        """Whether a batch could be stored now (directory writable, room left)."""
        return self.bytes < self.max_bytes and os.access(self.dir, os.W_OK)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
