"""Every officer's numeric patrol state, one slot (row) per officer, column by column.

Struct of arrays: each column is a numpy array indexed by slot, so the rules run
over many officers at once. Slots come from a free list; the arrays grow by
doubling. Recent accurate fixes live in a ring buffer of ``K`` entries per slot
(seconds and metres east/north from the slot's origin, float32); empty entries
have a NaN time. The whole per-slot record converts to and from a fixed-size binary
row (:meth:`Fleet.pack`, :meth:`Fleet.unpack`) for the store.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

K = 32
"""Ring entries per slot: the idle window is thinned to one point per window / (K - 4)."""
THIN = K - 4

Idx = npt.NDArray[np.intp]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

# name -> (dtype, trailing shape, value of a fresh slot)
COLUMNS: dict[str, tuple[Any, tuple[int, ...], float]] = {
    # shift
    "on_shift": (np.bool_, (), 0),
    "on_break": (np.bool_, (), 0),
    "watched_since": (np.float64, (), math.nan),
    # liveness, on receive time
    "last_seen": (np.float64, (), math.nan),
    "last_good_fix": (np.float64, (), math.nan),
    "offline": (np.bool_, (), 0),
    # out of grid, on fix time
    "outside": (np.bool_, (), 0),
    "out_since": (np.float64, (), math.nan),
    "newest_fix": (np.float64, (), math.nan),
    "pos_ts": (np.float64, (), math.nan),
    "pos_lon": (np.float64, (), math.nan),
    "pos_lat": (np.float64, (), math.nan),
    # the track: ring of fix time and metres from the origin (the first point since the
    # watch began: its time, lon, lat); head = newest entry
    "ring_t": (np.float32, (K,), math.nan),
    "ring_x": (np.float32, (K,), 0),
    "ring_y": (np.float32, (K,), 0),
    "head": (np.int16, (), K - 1),
    "count": (np.int16, (), 0),
    "t_last": (np.float64, (), math.nan),
    "t_prev": (np.float64, (), math.nan),
    "origin_t": (np.float64, (), math.nan),
    "origin_lon": (np.float64, (), math.nan),
    "origin_lat": (np.float64, (), math.nan),
    # the idle rule's result for the track as it is, until the track changes
    "idle_at": (np.float64, (), math.nan),
    "idle_stale": (np.bool_, (), 1),
    # thresholds (seconds, metres)
    "window": (np.float64, (), 600.0),
    "radius": (np.float32, (), 50.0),
    "max_acc": (np.float32, (), 50.0),
    "out_after": (np.float64, (), 300.0),
    "buffer": (np.float32, (), 20.0),
    "gps_after": (np.float64, (), 300.0),
    "offline_after": (np.float64, (), 180.0),
    # coverage: last accepted fix, distance, visited cells as bits of the assignment's cells
    "cov_lon": (np.float64, (), math.nan),
    "cov_lat": (np.float64, (), math.nan),
    "cov_ts": (np.float64, (), math.nan),
    "distance": (np.float64, (), 0.0),
    "visited": (np.uint64, (1,), 0),
    # alerting was told: bit i for rule i of rules.patrols.specs.PATROL_RULES, and since when
    # (the width of both follows the number of rules: see Fleet)
    "firing": (np.uint8, (), 0),
    "fired_since": (np.float64, (1,), math.nan),
}
RING = frozenset({"ring_t", "ring_x", "ring_y"})
"""Stored entry-major, (K, capacity): the idle check reduces over entries for many slots at
once, a contiguous row of slots at a time. Elsewhere a column is (capacity, ...)."""
RESTORED = tuple(COLUMNS)
"""Saved and restored columns (all of them; ``assign`` and ``has_sites`` are rebuilt)."""


def _column(shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
    """A zeroed column in an anonymous mapping of its own: pages of slots never used take
    no memory, and a column replaced when the fleet grows goes back to the system at once
    (from the C heap it could stay in the process)."""
    dt = np.dtype(dtype)
    n = math.prod(shape) * dt.itemsize
    if n < mmap.PAGESIZE:
        return np.zeros(shape, dtype=dt)
    return np.frombuffer(mmap.mmap(-1, n), dtype=dt).reshape(shape)


def flag_dtype(rules: int) -> np.dtype[Any]:
    """The narrowest unsigned integer with a bit for each of ``rules`` rules."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if np.dtype(dtype).itemsize * 8 >= rules:
            return np.dtype(dtype)
    raise ValueError(f"{rules} patrol rules: the firing flags hold at most 64")


class Fleet:
    """The columns, a free list of slots, growth by doubling.

    ``rules`` is the number of patrol rules (those of
    :data:`rules.patrols.specs.PATROL_RULES`, which the specs' owner passes: the specs
    import the rules' modules, which import this one): ``firing`` has a bit for each, in
    the narrowest unsigned integer that holds them, and ``fired_since`` a column for each.
    """

    def __init__(self, rules: int, capacity: int = 1024, visited_words: int = 1) -> None:
        self.capacity = 0
        self.cols: dict[str, npt.NDArray[Any]] = {}
        self.shapes = {n: s for n, (_, s, _) in COLUMNS.items()}
        self.shapes["visited"] = (visited_words,)
        self.shapes["fired_since"] = (rules,)
        dtypes = {n: np.dtype(d) for n, (d, _, _) in COLUMNS.items()}
        dtypes["firing"] = flag_dtype(rules)
        for name, dtype in dtypes.items():
            shape = (K, 0) if name in RING else (0, *self.shapes[name])
            self.cols[name] = np.empty(shape, dtype=dtype)
        self.assign = np.empty(0, dtype=np.int32)
        """Row of the slot's assignment in the :class:`AssignmentTable`, or -1."""
        self.has_sites = np.empty(0, dtype=np.bool_)
        self.used = np.empty(0, dtype=np.bool_)
        self.dirty = np.empty(0, dtype=np.bool_)
        """Changed since last saved."""
        self.sites: dict[int, dict[str, tuple[float, float]]] = {}
        """Sites (lon, lat) of the open cases each slot's officer handles, by case id."""
        self._free: list[int] = []
        self._grow(capacity)

    def __getattr__(self, name: str) -> npt.NDArray[Any]:
        try:
            col: npt.NDArray[Any] = self.__dict__["cols"][name]
            return col
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return self.capacity - len(self._free)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (capacity, not just used slots)."""
        extra = self.assign.nbytes + self.has_sites.nbytes + self.used.nbytes + self.dirty.nbytes
        return sum(a.nbytes for a in self.cols.values()) + extra

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name, a in self.cols.items():
            if name in RING:
                b = _column((K, capacity), a.dtype)
                b[:, :old] = a
            else:
                b = _column((capacity, *self.shapes[name]), a.dtype)
                b[:old] = a
            self.cols[name] = b
        for attr, fill in (("assign", -1), ("has_sites", False), ("used", False), ("dirty", False)):
            a = getattr(self, attr)
            b = _column((capacity,), a.dtype)
            b[:old] = a
            b[old:] = fill
            setattr(self, attr, b)
        self._free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def widen_visited(self, words: int) -> None:
        """Room for assignments of up to 64 * ``words`` cells."""
        if words <= self.shapes["visited"][0]:
            return
        a = self.cols["visited"]
        b = _column((self.capacity, words), np.uint64)
        b[:, : a.shape[1]] = a
        self.cols["visited"] = b
        self.shapes["visited"] = (words,)

    def alloc(self) -> int:
        """A fresh slot."""
        if not self._free:
            self._grow(max(1024, 2 * self.capacity))
        slot = self._free.pop()
        for name, (_, _, fill) in COLUMNS.items():
            if name in RING:
                self.cols[name][:, slot] = fill
            else:
                self.cols[name][slot] = fill
        self.assign[slot] = -1
        self.has_sites[slot] = False
        self.used[slot] = True
        return slot

    def free(self, slot: int) -> None:
        """Give the slot back; it is reused by the next :meth:`alloc`."""
        self.used[slot] = False
        self.dirty[slot] = False
        self.on_shift[slot] = False
        self.assign[slot] = -1
        self.has_sites[slot] = False
        self.sites.pop(slot, None)
        self._free.append(slot)

    def live(self) -> Idx:
        """The slots in use."""
        return np.flatnonzero(self.used)

    def active(self, idx: Idx) -> Bools:
        """On shift and not on a break: the rules apply."""
        return np.asarray(self.on_shift[idx] & ~self.on_break[idx])

    def reset_track(self, slot: int) -> None:
        """Empty the ring and forget where the officer was: the watch starts afresh."""
        self.ring_t[:, slot] = math.nan
        for name in ("head", "count", "t_last", "t_prev", "origin_t", "origin_lon", "origin_lat"):
            self.cols[name][slot] = COLUMNS[name][2]
        self.idle_stale[slot] = True

    # -- rows for the store ------------------------------------------------------

    def dtype(self) -> np.dtype[Any]:
        """The binary row layout of one slot."""
        return np.dtype([(n, self.cols[n].dtype, self.shapes[n]) for n in RESTORED])

    def pack(self, idx: Idx) -> tuple[npt.NDArray[np.uint8], int]:
        """A copy of the rows of ``idx`` as bytes, and the size of a row."""
        rec = np.empty(len(idx), dtype=self.dtype())
        for name in RESTORED:
            col = self.cols[name]
            rec[name] = col[:, idx].T if name in RING else col[idx]
        return rec.view(np.uint8), rec.dtype.itemsize

    @staticmethod
    def row_size(descr: Any) -> int:
        """Bytes in a row of the saved layout ``descr``."""
        return _saved_dtype(descr).itemsize

    def unpack(self, slots: Sequence[int], rows: Sequence[bytes], descr: Any) -> None:
        """Write rows packed with the layout ``descr`` (a saved :meth:`dtype`) into ``slots``."""
        dt = _saved_dtype(descr)
        rec = np.frombuffer(b"".join(rows), dtype=dt)
        idx = np.asarray(slots, dtype=np.intp)
        for name in RESTORED:
            if name not in dt.names:  # type: ignore[operator]
                continue
            src, dst = rec[name], self.cols[name]
            if name in RING:
                dst[:, idx] = src.T
            elif src.shape[1:] == dst.shape[1:]:
                dst[idx] = src  # of another width of integer (firing, when rules were added)
            elif name == "visited":
                self.widen_visited(src.shape[1])
                self.cols[name][idx, : src.shape[1]] = src
            else:
                # A column with an entry per rule, saved when there were fewer rules: new
                # rules go at the end of the table, so the saved entries are the first ones.
                n = min(src.shape[1], dst.shape[1])
                dst[idx, :n] = src[:, :n]


def _saved_dtype(descr: Any) -> np.dtype[Any]:
    """The dtype of a layout saved as JSON (lists where numpy has tuples)."""
    return np.dtype([(f[0], f[1], tuple(f[2])) if len(f) > 2 else (f[0], f[1]) for f in descr])
