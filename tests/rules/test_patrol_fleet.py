"""The fleet's ring buffers: wrap-around, buffered uploads, bounded memory."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from citywatch.rules.patrols.fleet import Fleet, K, flag_dtype
from citywatch.rules.patrols.specs import PATROL_RULES
from citywatch.rules.patrols.track import add_points
from tests.rules.test_patrol_rules import T0, drift, feed, start


def ring(f: Fleet, slot: int) -> np.ndarray:
    """The slot's fix times, oldest first (the ring read from after its head)."""
    head = int(f.head[slot])
    order = [(head + 1 + i) % K for i in range(K)]
    t = f.ring_t[order, slot].astype(np.float64) + f.origin_t[slot]
    return np.asarray(t[~np.isnan(t)])


def add(f: Fleet, slot: int, t: float, x: float = 0.0) -> None:
    lon, lat = 119.9 + x / 94_000, 32.45
    a = np.array
    add_points(f, a([slot], dtype=np.intp), a([t]), a([lon]), a([lat]))


def one_slot(window: float) -> tuple[Fleet, int]:
    """A fleet of two slots, one taken, with an idle ``window`` of seconds."""
    f = Fleet(len(PATROL_RULES), capacity=2)
    s = f.alloc()
    f.window[s] = window
    return f, s


def test_the_ring_wraps_around_keeping_a_whole_window() -> None:
    f, s = one_slot(600.0)
    for k in range(10 * 360):  # ten hours of one fix every 10 s
        add(f, s, T0 + 10 * k)
        t = ring(f, s)
        assert len(t) <= K and int(f.count[s]) == len(t)
        assert np.all(np.diff(t) > 0), "oldest to newest around the ring"
        if k * 10 >= 600:
            assert t[0] <= t[-1] - 600, "the window and the point before it are kept"
    assert f.t_last[s] == T0 + 10 * (10 * 360 - 1)


def test_idle_holds_across_many_wraps_and_a_walk_never_is_idle() -> None:
    p = start()
    events = feed(p, drift(3 * 3600, 10.0))
    assert events == ["patrol_idle:firing"], "flagged once, never resolved by a wrap"
    assert int(p.f.count[p.slot]) <= K
    w = start()
    walk = [  # a circle of 80 m at 1 m/s
        (T0 + s, 80 * math.cos(s / 80), 80 * math.sin(s / 80)) for s in range(0, 3 * 3600, 10)
    ]
    assert "patrol_idle:firing" not in feed(w, walk)


def test_buffered_fixes_go_in_by_fix_time() -> None:
    f, s = one_slot(600.0)
    for k in range(40):
        add(f, s, T0 + 30 * k)
    rnd = random.Random(3)
    late = [T0 + 30 * rnd.uniform(20, 39) for _ in range(100)]  # a whole buffer, in the window
    for t in late:
        add(f, s, t, x=1.0)
    t = ring(f, s)
    assert len(t) <= K and np.all(np.diff(t) >= 0)
    assert t[-1] == T0 + 30 * 39, "the newest stays the newest"
    assert t[0] <= t[-1] - 600, "the window is still covered"
    add(f, s, T0 + 30 * 40)
    t = ring(f, s)
    assert t[-1] == T0 + 30 * 40 and t[0] <= t[-1] - 600 and len(t) <= K


def test_a_buffered_upload_does_not_clear_idle() -> None:
    p = start()
    assert feed(p, drift(11 * 60, 10.0)) == ["patrol_idle:firing"]
    # The same place, uploaded late: placed in the track, no change of state.
    old = drift(600, 10.0, seed=2, t=T0 + 30)
    assert feed(p, old, lag=400.0) == []
    assert p.firing("patrol_idle") is not None
    assert int(p.f.count[p.slot]) <= K


def test_fixes_older_than_the_window_do_not_stay() -> None:
    f, s = one_slot(60.0)
    for k in range(20):
        add(f, s, T0 + 10 * k)
    add(f, s, T0 - 3600)
    t = ring(f, s)
    assert t[0] > T0 and t[0] <= t[-1] - 60


def test_memory_is_bounded_per_slot() -> None:
    f = Fleet(len(PATROL_RULES), capacity=1024)
    before = f.nbytes
    slots = np.array([f.alloc() for _ in range(1000)], dtype=np.intp)
    f.window[slots] = 600.0
    rnd = np.random.default_rng(1)
    for k in range(500):
        lon = 119.9 + rnd.normal(0, 1e-4, len(slots))
        lat = 32.45 + rnd.normal(0, 1e-4, len(slots))
        add_points(f, slots, np.full(len(slots), T0 + 10.0 * k), lon, lat)
    assert f.capacity == 1024 and f.nbytes == before, "no growth however long the shift"
    assert int(f.count[slots].max()) <= K
    assert f.nbytes / f.capacity < 1024, "well within the 2 KB a device"


def test_free_slots_are_reused_and_start_fresh() -> None:
    f = Fleet(len(PATROL_RULES), capacity=2)
    a = f.alloc()
    add(f, a, T0)
    f.firing[a] = 3
    f.free(a)
    b = f.alloc()
    assert b == a
    assert f.firing[b] == 0 and int(f.count[b]) == 0 and math.isnan(f.t_last[b])
    c, d = f.alloc(), f.alloc()
    assert f.capacity >= 3 and len({b, c, d}) == 3, "grows by doubling when full"


def test_rows_saved_with_fewer_rules_restore_into_a_fleet_with_more() -> None:
    """Adding a patrol rule widens ``firing`` and ``fired_since``; saved flags keep their rules."""
    old = Fleet(4, capacity=2)
    s = old.alloc()
    old.on_shift[s] = True
    old.firing[s] = 0b1010
    old.fired_since[s, 1], old.fired_since[s, 3] = T0, T0 + 60
    packed, size = old.pack(np.array([s], dtype=np.intp))
    layout = json.loads(json.dumps(old.dtype().descr))  # as the store keeps it
    new = Fleet(9, capacity=2)
    assert (old.firing.dtype, new.firing.dtype) == (np.uint8, np.uint16)
    assert Fleet.row_size(layout) == size
    t = new.alloc()
    new.unpack([t], [packed.tobytes()], layout)
    assert int(new.firing[t]) == 0b1010 and bool(new.on_shift[t])
    assert new.fired_since[t, 1] == T0 and new.fired_since[t, 3] == T0 + 60
    assert np.isnan(new.fired_since[t, [0, 2, 4, 5, 6, 7, 8]]).all()


def test_the_firing_flags_hold_a_bit_per_rule() -> None:
    widths = {n: flag_dtype(n).itemsize * 8 for n in (1, 8, 9, 16, 17, 33, 64)}
    assert widths == {1: 8, 8: 8, 9: 16, 16: 16, 17: 32, 33: 64, 64: 64}
    with pytest.raises(ValueError):
        flag_dtype(65)
