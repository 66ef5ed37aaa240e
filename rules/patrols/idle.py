"""``patrol_idle``: the officer stayed within ``radius`` for ``window``.

Judged on how far the officer moved over the window (the spread of accurate
fixes around their centre), not on reported speed, which handhelds get wrong:
drift within the radius is not movement, a slow walk leaves it.
"""

from __future__ import annotations

import math

from citywatch.geo import EARTH_RADIUS_M, haversine_m
from rules.patrols.config import Thresholds
from rules.patrols.state import Patrol


def idle_since(p: Patrol, th: Thresholds, now: float) -> float | None:
    """The fix time since which the officer has been idle, or None."""
    track = p.track
    cfg = th.idle
    if not p.active or len(track) < 2:
        return None
    start = track[-1][0] - cfg.window
    if track[0][0] > start or (p.watched_since is not None and track[0][0] < p.watched_since):
        return None  # not watched for a whole window yet
    n = len(track)
    lon = sum(pt[1] for pt in track) / n
    lat = sum(pt[2] for pt in track) / n
    # Metres per degree near the centre: exact enough within a few hundred metres.
    ky = EARTH_RADIUS_M * math.pi / 180
    kx = ky * math.cos(math.radians(lat))
    r2 = cfg.radius * cfg.radius
    for _, plon, plat in track:
        dx, dy = (plon - lon) * kx, (plat - lat) * ky
        if dx * dx + dy * dy > r2:
            return None
    for slon, slat in p.sites.values():
        if haversine_m(lon, lat, slon, slat) <= cfg.radius:
            return None  # at the site of a case the officer is handling: that is work
    return start
