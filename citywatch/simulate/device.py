"""One officer's handheld: shifts, episodes, fixes, heartbeats and status.

A device works 8-hour shifts with 16 hours off between them. At each shift
start it plans that shift's episodes (standing idle, leaving the grids, going
offline, losing GPS, a break) from its officer's behaviours, so the first
ones fall within the shift's first hour and repeat every two to three hours.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from citywatch.geo import gcj02_to_bd09, wgs84_to_gcj02
from citywatch.simulate.crew import MOVEMENT, Crew, Officer
from citywatch.simulate.message import Message
from citywatch.simulate.walk import Episode, EpisodeKind, PatrolGraph, Walker
from citywatch.topics import gps_topic, heartbeat_topic, shift_topic, status_topic

_CST = timezone(timedelta(hours=8))
MINUTE = 60.0
SHIFT_S = 8 * 3600.0
OFF_DUTY_S = 16 * 3600.0
APP_VERSIONS = ("3.2.0", "3.2.1", "3.3.0")
# Minutes each kind of episode lasts (uniform between the bounds).
_DURATIONS = {
    "idle": (12, 20),
    "leave_grid": (15, 25),
    "offline": (5, 10),
    "gps_lost": (6, 10),
    "break": (15, 30),
}
_WALKER_KIND: dict[str, EpisodeKind] = {"idle": "idle", "break": "break", "leave_grid": "leave"}
_OUTLIER_P = 0.01


def rfc3339(ts: float) -> str:
    """``ts`` as RFC 3339 in China Standard Time with milliseconds (truncated, as isoformat)."""
    whole = math.floor(ts)
    micros = round((ts - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    minute, second = divmod(whole, 60)
    return f"{_minute_prefix(minute)}{second:02d}.{micros // 1000:03d}+08:00"


@functools.lru_cache(maxsize=64)
def _minute_prefix(minute: int) -> str:
    # Every message carries a timestamp and they come in time order, so the
    # calendar arithmetic is done once a minute rather than once a message.
    return datetime.fromtimestamp(minute * 60, _CST).strftime("%Y-%m-%dT%H:%M:")


@dataclass(frozen=True)
class DeviceSettings:
    """What every device shares: the topic root, the city and reporting intervals."""

    topic_root: str
    city: str
    fix_interval: float
    heartbeat_interval: float


class Device:
    """A handheld and its officer, run as an actor by the fleet."""

    def __init__(self, officer: Officer, crew: Crew, settings: DeviceSettings, seed: str) -> None:
        self.officer = officer
        self.settings = settings
        self.projection = crew.projection
        self.plan = random.Random(f"{seed}/plan")
        self.noise = random.Random(f"{seed}/gps")
        graph = PatrolGraph(
            (c.x0, c.y0, c.x1, c.y1) for c in (crew.cells[g] for g in officer.grids)
        )
        self.walker = Walker(graph, random.Random(f"{seed}/walk"), self.plan.uniform(1.0, 1.5))
        root, city, device = settings.topic_root, settings.city, officer.device
        self.topic_gps = gps_topic(root, city, device)
        self.topic_hb = heartbeat_topic(root, city, device)
        self.topic_status = status_topic(root, city, device)
        self.topic_shift = shift_topic(root, city, officer.officer)
        self.on_shift = self.online = False
        self.gps = True
        self.buffer: list[dict[str, Any]] | None = None
        self.battery = self.plan.uniform(60.0, 100.0)
        self.charging = False
        self.drain = self.plan.uniform(5.0, 9.0) / 3600.0
        self.battery_t = 0.0
        self.signal_mean = self.plan.uniform(-95.0, -70.0)
        self.signal = self.signal_mean
        self.app = self.plan.choices(APP_VERSIONS, weights=(2, 5, 3))[0]
        self.seq = 0
        self.acc = self.plan.uniform(4.0, 10.0)
        self.err = (0.0, 0.0)
        self.next_fix = self.next_hb = math.inf
        self._controls: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._shifts = 0
        self._handlers: dict[str, Callable[[float, list[Message]], None]] = {
            "shift_start": self._shift_start,
            "shift_end": self._shift_end,
            "offline_start": self._offline_start,
            "offline_end": self._offline_end,
            "gps_lost_start": self._gps_lost_start,
            "gps_lost_end": self._gps_lost_end,
            "break_start": self._break_start,
            "break_end": self._break_end,
        }

    def first(self, start: float) -> float:
        """Schedule the first shift shortly after ``start``; returns when it begins."""
        t = start + self.plan.uniform(0.0, 60.0)
        self._at(t, "shift_start")
        return t

    def step(self, t: float, out: list[Message]) -> float | None:
        """Emit whatever is due at ``t`` and return when to be called next."""
        while self._controls and self._controls[0][0] <= t:
            tc, _, action = heapq.heappop(self._controls)
            self._handlers[action](tc, out)
        if self.next_hb <= t:
            self._heartbeat(t, out)
            self.next_hb = t + self.settings.heartbeat_interval * self.noise.uniform(0.99, 1.01)
        if self.next_fix <= t:
            self._fix(t, out)
            self.next_fix = t + self.settings.fix_interval * self.noise.uniform(0.98, 1.02)
        nxt = min(self.next_hb, self.next_fix)
        return min(nxt, self._controls[0][0]) if self._controls else nxt

    def _at(self, t: float, action: str) -> None:
        heapq.heappush(self._controls, (t, next(self._order), action))

    def _emit(self, out: list[Message], topic: str, payload: Any, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        out.append(Message(topic, data, retain=retain))

    def _shift_event(self, t: float, out: list[Message], action: str) -> None:
        o = self.officer
        payload: dict[str, Any] = {"ts": rfc3339(t), "action": action, "device": o.device}
        if action == "start":
            payload["grids"] = list(o.grids)
        payload |= {"lead": o.lead, "role": o.role}
        self._emit(out, self.topic_shift, payload)

    def _shift_start(self, t: float, out: list[Message]) -> None:
        self._shifts += 1
        if self._shifts > 1:
            self.battery, self.charging = self.plan.uniform(85.0, 100.0), False
        self.battery_t = t
        self.on_shift = self.online = self.gps = True
        self._emit(out, self.topic_status, b"online", retain=True)
        self._shift_event(t, out, "start")
        end = t + SHIFT_S + self.plan.uniform(-15, 15) * MINUTE
        self._at(end, "shift_end")
        self._at(end + OFF_DUTY_S + self.plan.uniform(-10, 10) * MINUTE, "shift_start")
        walk: list[Episode] = []
        for kind, start, stop in self._plan_episodes(t, end):
            if kind in _WALKER_KIND:
                walk.append(Episode(_WALKER_KIND[kind], start, stop))
            if kind in ("offline", "gps_lost", "break"):
                self._at(start, f"{kind}_start")
                self._at(stop, f"{kind}_end")
        self.walker.restart(t, walk)
        self.next_hb = t + self.plan.uniform(0.5, 5.0)
        self.next_fix = t + self.plan.uniform(1.0, self.settings.fix_interval)

    def _plan_episodes(self, t: float, end: float) -> list[tuple[str, float, float]]:
        rng, tags = self.plan, self.officer.behaviours
        episodes = []
        if "break" in tags:
            start = t + rng.uniform(45, 100) * MINUTE
            episodes.append(("break", start, start + rng.uniform(*_DURATIONS["break"]) * MINUTE))
        kinds = [k for k in tags if k in MOVEMENT]
        start = t + rng.uniform(5, 60) * MINUTE
        for i in itertools.count():
            if not kinds:
                break
            kind = kinds[i % len(kinds)]
            length = rng.uniform(*_DURATIONS[kind]) * MINUTE
            # Leaving the grids also takes the walk out and back.
            tail = 30 * MINUTE if kind == "leave_grid" else 0.0
            if start + length + tail > end - 30 * MINUTE:
                break
            episodes.append((kind, start, start + length))
            start += length + tail + rng.uniform(90, 180) * MINUTE
        return episodes

    def _shift_end(self, t: float, out: list[Message]) -> None:
        self._shift_event(t, out, "end")
        self._emit(out, self.topic_status, b"offline", retain=True)
        self.on_shift = self.online = False
        self.buffer = None
        self.next_fix = self.next_hb = math.inf

    def _offline_start(self, t: float, out: list[Message]) -> None:
        # The broker publishes the handheld's will; the simulator stands in for it.
        self._emit(out, self.topic_status, b"offline", retain=True)
        self.online = False
        self.buffer = [] if "buffer" in self.officer.behaviours else None

    def _offline_end(self, t: float, out: list[Message]) -> None:
        self.online = True
        self._emit(out, self.topic_status, b"online", retain=True)
        if self.buffer:
            self._emit(out, self.topic_gps, self.buffer)
        self.buffer = None

    def _gps_lost_start(self, t: float, out: list[Message]) -> None:
        self.gps = False

    def _gps_lost_end(self, t: float, out: list[Message]) -> None:
        self.gps = True

    def _break_start(self, t: float, out: list[Message]) -> None:
        self._shift_event(t, out, "break_start")

    def _break_end(self, t: float, out: list[Message]) -> None:
        self._shift_event(t, out, "break_end")

    def _update_battery(self, t: float) -> int:
        dt, self.battery_t = max(0.0, t - self.battery_t), t
        if self.charging:
            self.battery = min(100.0, self.battery + dt * 40.0 / 3600.0)
            self.charging = self.battery < 95.0
        else:
            self.battery = max(1.0, self.battery - dt * self.drain)
            # Officers carry power banks and plug in when the battery runs low.
            self.charging = self.battery < 18.0
        return round(self.battery)

    def _heartbeat(self, t: float, out: list[Message]) -> None:
        battery = self._update_battery(t)
        mean = self.signal_mean
        self.signal = mean + 0.7 * (self.signal - mean) + self.noise.gauss(0.0, 3.0)
        if not self.online:
            return
        payload = {
            "ts": rfc3339(t),
            "battery": battery,
            "charging": self.charging,
            "signal": round(min(-50.0, max(-115.0, self.signal))),
            "app": self.app,
            "gps": self.gps,
        }
        self._emit(out, self.topic_hb, payload)

    def _fix(self, t: float, out: list[Message]) -> None:
        if not self.gps or not (self.online or self.buffer is not None):
            return
        rng = self.noise
        pose = self.walker.at(t)
        self.acc = min(15.0, max(3.0, self.acc + rng.gauss(0.0, 0.8)))
        # GPS error wanders slowly rather than jumping independently each fix.
        sigma, keep = self.acc / 1.5, 0.8
        shake = math.sqrt(1 - keep * keep)
        ex = keep * self.err[0] + shake * rng.gauss(0.0, sigma)
        ey = keep * self.err[1] + shake * rng.gauss(0.0, sigma)
        self.err = (ex, ey)
        x, y = pose.x + ex, pose.y + ey
        if rng.random() < _OUTLIER_P:
            r, a = rng.uniform(30.0, 80.0), rng.uniform(0.0, 2 * math.pi)
            x, y = x + r * math.sin(a), y + r * math.cos(a)
        lon, lat = self.projection.to_ll(x, y)
        crs = self.officer.crs
        if crs in ("gcj02", "bd09"):
            lon, lat = wgs84_to_gcj02(lon, lat)
            if crs == "bd09":
                lon, lat = gcj02_to_bd09(lon, lat)
        moving = pose.speed > 0
        speed = max(0.0, pose.speed + rng.gauss(0.0, 0.15)) if moving else abs(rng.gauss(0.0, 0.1))
        heading = (pose.heading + rng.gauss(0.0, 10.0 if moving else 40.0)) % 360.0
        self.seq += 1
        fix: dict[str, Any] = {"ts": rfc3339(t), "lat": round(lat, 7), "lon": round(lon, 7)}
        if crs != "wgs84":
            fix["crs"] = crs
        fix |= {
            "acc": round(self.acc, 1),
            "speed": round(speed, 2),
            "heading": round(heading, 1) % 360.0,
            "battery": self._update_battery(t),
            "seq": self.seq,
        }
        if self.online:
            self._emit(out, self.topic_gps, fix)
        elif self.buffer is not None:
            self.buffer.append(fix)
