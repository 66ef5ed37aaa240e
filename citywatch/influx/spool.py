"""A bounded, crash-safe, first-in-first-out queue of batches on disk.

Each batch is one file, written to a temporary name, flushed to disk and then
renamed, so a crash leaves either the whole batch or nothing. Files are named
by a sequence number; replay takes the lowest first.

A directory that cannot be read, written or cleaned does not stop the spool: the
failing call raises :class:`SpoolUnwritable`, ``error`` says why until a later call
(or :meth:`Spool.probe`) succeeds, and a directory that could not be read at start
is read when it can be.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".lp"
_PROBE = "probe.tmp"


class SpoolFull(Exception):
    """The spool has reached its size limit (or the disk is full)."""


class SpoolUnwritable(SpoolFull):
    """The spool's directory or disk failed a read, a write or a removal."""


class Spool:
    """Batches of line protocol (possibly gzip'd) waiting for InfluxDB."""

    def __init__(self, directory: Path, max_bytes: int, *, fsync: bool = True) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._segments: list[tuple[int, int]] = []
        self.bytes = 0
        self._next = 1
        self.opened = False
        """Whether the batches on disk are known (the directory could be read)."""
        self.error: str | None = None
        """Why the last operation on the directory failed; None once one succeeds."""
        self._wanted = 0
        """Bytes of the last batch the disk did not take: what :meth:`probe` looks for."""
        self.open()

    def open(self) -> bool:
        """Find the batches on disk; False (``error`` says why) if the directory is unreadable."""
        if self.opened:
            return True
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            segments = sorted(
                (int(p.stem), p.stat().st_size)
                for p in self.dir.glob(f"*{_SUFFIX}")
                if p.stem.isdigit()
            )
            leftovers = list(self.dir.glob("*.tmp"))
        except OSError as exc:
            self._failed("cannot read the spool", exc)
            return False
        for tmp in leftovers:
            # Never read; a directory that refuses writes keeps them until it takes them.
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._segments = segments
        self.bytes = sum(s for _, s in segments)
        self._next = segments[-1][0] + 1 if segments else 1
        self.opened = True
        self.error = None
        return True

    def _ensure_open(self) -> None:
        if not self.open():
            raise SpoolUnwritable(self.error or "spool not open")

    def _failed(self, what: str, exc: OSError) -> str:
        self.error = f"{what} {self.dir}: {exc.strerror or exc}"
        return self.error

    def __len__(self) -> int:
        return len(self._segments)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{_SUFFIX}"

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes are within the size limit."""
        return self.bytes + size <= self.max_bytes

    def append(self, body: bytes) -> None:
        """Store one batch durably. Raises :class:`SpoolFull` when it does not fit."""
        if not self.fits(len(body)):
            raise SpoolFull(f"spool holds {self.bytes} bytes, limit {self.max_bytes}")
        self._ensure_open()
        seq = self._next
        path = self._path(seq)
        try:
            self._write(path, body)
        except OSError as exc:
            self._wanted = len(body)
            raise SpoolUnwritable(self._failed("cannot write to the spool", exc)) from exc
        self.error = None
        self._wanted = 0
        self._next = seq + 1
        self._segments.append((seq, len(body)))
        self.bytes += len(body)

    def _write(self, path: Path, body: bytes) -> None:
        """Write ``body`` under a temporary name, then rename it to ``path`` (atomic)."""
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # The rename is the commit point: from here on the batch is in the spool.
        if self.fsync:
            try:
                self._sync_dir()
            except OSError as exc:
                log.warning("spool directory sync failed: %s", exc)

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest batch, without removing it. Raises :class:`SpoolUnwritable`."""
        self._ensure_open()
        while self._segments:
            seq, _ = self._segments[0]
            try:
                body = self._path(seq).read_bytes()
            except FileNotFoundError:
                self._pop(seq)
                continue
            except OSError as exc:
                raise SpoolUnwritable(self._failed("cannot read the spool", exc)) from exc
            return seq, body
        return None

    def remove(self, seq: int) -> None:
        """Remove a replayed batch. Raises :class:`SpoolUnwritable`, keeping it listed."""
        try:
            self._path(seq).unlink(missing_ok=True)
        except OSError as exc:
            raise SpoolUnwritable(self._failed("cannot remove a batch from", exc)) from exc
        self.error = None
        self._pop(seq)

    def rewrite(self, seq: int, body: bytes) -> None:
        """Replace batch ``seq`` by ``body`` (what is left of it to replay), atomically."""
        try:
            self._write(self._path(seq), body)
        except OSError as exc:
            raise SpoolUnwritable(self._failed("cannot write to the spool", exc)) from exc
        for i, (s, n) in enumerate(self._segments):
            if s == seq:
                self._segments[i] = (seq, len(body))
                self.bytes += len(body) - n

    def quarantine(self, seq: int) -> Path:
        """Set aside a batch that cannot be read as line protocol (renamed ``.corrupt``)."""
        path = self._path(seq)
        target = path.with_suffix(".corrupt")
        try:
            os.replace(path, target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SpoolUnwritable(self._failed("cannot set aside a batch in", exc)) from exc
        self._pop(seq)
        return target

    def _pop(self, seq: int) -> None:
        for i, (s, n) in enumerate(self._segments):
            if s == seq:
                del self._segments[i]
                self.bytes -= n
                return

    def probe(self, need: int = 0) -> bool:
        """Whether the directory takes a file now, with room on its disk for ``need`` bytes
        and for the last batch it could not write.

        Clears ``error`` when it does. Run while the spool is failing, to notice when it
        works again without waiting for the next batch.
        """
        try:
            self._ensure_open()
            path = self.dir / _PROBE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            path.unlink()
            st = os.statvfs(self.dir)
        except SpoolUnwritable:
            return False
        except OSError as exc:
            self._failed("cannot write to the spool", exc)
            return False
        free = st.f_bavail * st.f_frsize
        if free < max(need, self._wanted):
            strerror = os.strerror(errno.ENOSPC)
            self.error = f"cannot write to the spool {self.dir}: {strerror} ({free} bytes free)"
            return False
        self.error = None
        return True

    def writable(self) -> bool:
        """Whether a batch could be stored now (directory writable, room left)."""
        return (
            self.opened
            and self.error is None
            and self.bytes < self.max_bytes
            and os.access(self.dir, os.W_OK)
        )

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
