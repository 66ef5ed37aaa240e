"""``device_offline`` and ``patrol_gps_lost``, judged on receive time.

Offline: neither heartbeat nor fix for ``offline.after``, or the handheld's
retained ``offline`` status. GPS lost: the handheld is alive, but no usable fix
(within ``idle.max_acc``) has come for ``gps_lost.after``. Both are column
comparisons over the slots, and both come true by time alone: each has a
``*_due`` function, the instant it would, for the ticker.
"""

from __future__ import annotations

import numpy as np

from citywatch.rules.patrols.fleet import Fleet, Floats, Idx


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


def offline_due(f: Fleet, idx: Idx) -> Floats:
    """Per slot, when offline will start to hold if nothing more arrives."""
    due: Floats = _seen(f, idx) + f.offline_after[idx]
    return due


def gps_lost_due(f: Fleet, idx: Idx) -> Floats:
    """Per slot, when GPS lost will start to hold if no usable fix arrives.

    Not while offline holds (see the rule's ``masked_by``): an observation ends that, and
    is evaluated.
    """
    due: Floats = _good(f, idx) + f.gps_after[idx]
    return due
