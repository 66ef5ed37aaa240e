"""``device_offline`` and ``patrol_gps_lost``, judged on receive time.

Offline: neither heartbeat nor fix for ``offline.after``, or the handheld's
retained ``offline`` status. GPS lost: the handheld is alive, but no usable fix
(within ``idle.max_acc``) has come for ``gps_lost.after``. Both are column
comparisons over the slots.
"""

from __future__ import annotations

import numpy as np

from rules.patrols.fleet import RULE_NAMES, Fleet, Floats, Idx

_GPS = 1 << RULE_NAMES.index("patrol_gps_lost")
_OFFLINE = 1 << RULE_NAMES.index("device_offline")


def _seen(f: Fleet, idx: Idx) -> Floats:
    seen = f.last_seen[idx]
    return np.where(np.isnan(seen), f.watched_since[idx], seen)


def _good(f: Fleet, idx: Idx) -> Floats:
    last = f.last_good_fix[idx]
    return np.where(np.isnan(last), f.watched_since[idx], last)


def offline_since(f: Fleet, idx: Idx, now: float) -> Floats:
    """Per slot, the receive time since which the handheld has been silent, or NaN."""
    seen = _seen(f, idx)
    held = f.active(idx) & (f.offline[idx] | (now - seen >= f.offline_after[idx]))
    return np.where(held, seen, np.nan)


def gps_lost_since(f: Fleet, idx: Idx, now: float) -> Floats:
    """Per slot, the receive time of the last usable fix, if that was too long ago; else NaN."""
    last = _good(f, idx)
    held = np.isnan(offline_since(f, idx, now)) & f.active(idx) & (now - last >= f.gps_after[idx])
    return np.where(held, last, np.nan)


def next_instants(f: Fleet, idx: Idx) -> Floats:
    """Per slot, when a liveness condition will start to hold if nothing more arrives (or NaN)."""
    firing = f.firing[idx]
    off = np.where(firing & _OFFLINE, np.nan, _seen(f, idx) + f.offline_after[idx])
    # GPS lost cannot start while offline holds; an observation ends that, and is evaluated.
    gps = np.where(firing & (_GPS | _OFFLINE), np.nan, _good(f, idx) + f.gps_after[idx])
    return np.where(f.active(idx), np.fmin(off, gps), np.nan)
