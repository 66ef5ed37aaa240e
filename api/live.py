"""The live board of handhelds, for the API: a sink fed the same records as the rules.

Keeps, per device, the last fix, the last heartbeat (battery) and the retained
status, plus the officer using it from shift events, and publishes each new
position to the stream hub. A device's status is judged like the patrol rules
judge liveness, on receive times: ``offline`` after ``patrols.offline.after``
without a heartbeat or fix (or with the retained ``offline`` status),
``gps_lost`` when alive but without a usable fix for ``patrols.gps_lost.after``.
A device nothing has come from for ``devices.evict_after`` is forgotten, so the
board holds the handhelds of the last day, not every id ever seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citywatch.api.stream import Hub
from citywatch.clock import Clock, SystemClock
from citywatch.models import DeviceStatus, Fix, Heartbeat, Record, ShiftEvent
from citywatch.rules.patrols.config import PatrolsConfig

_SWEEP_EVERY = 60.0  # forgetting is a pass over every device: at most once a minute

DEVICE_STATES = ("online", "gps_lost", "offline")


@dataclass(slots=True)
class Device:
    """What is known of one handheld."""

    city: str
    device: str
    fix: Fix | None = None
    good_fix_at: float | None = None
    heartbeat: Heartbeat | None = None
    last_seen: float | None = None
    online: bool = True
    officer: str | None = None
    grids: tuple[str, ...] = ()
    battery: float | None = None
    heard_at: float = 0.0
    """When the latest record of any kind about the device was received."""

    def status(self, now: float, cfg: PatrolsConfig) -> str:
        if not self.online or self.last_seen is None or now - self.last_seen >= cfg.offline.after:
            return "offline"
        if self.good_fix_at is None or now - self.good_fix_at >= cfg.gps_lost.after:
            return "gps_lost"
        return "online"

    def to_json(self, now: float, cfg: PatrolsConfig) -> dict[str, Any]:
        fix = self.fix
        hb = self.heartbeat
        return {
            "city": self.city,
            "device": self.device,
            "status": self.status(now, cfg),
            "officer": self.officer,
            "grids": list(self.grids),
            "battery": self.battery,
            "last_seen": self.last_seen,
            "last_fix": None
            if fix is None
            else {
                "ts": fix.ts,
                "lat": fix.lat,
                "lon": fix.lon,
                "acc": fix.acc,
                "speed": fix.speed,
                "heading": fix.heading,
                "received_at": fix.received_at,
            },
            "last_heartbeat": None
            if hb is None
            else {"ts": hb.ts, "received_at": hb.received_at, "battery": hb.battery, "app": hb.app},
        }


class DeviceBoard:
    """A :class:`citywatch.sink.Sink` keeping the last state of every handheld."""

    def __init__(
        self,
        patrols: PatrolsConfig,
        hub: Hub | None = None,
        clock: Clock | None = None,
        evict_after: float = 86400.0,
    ) -> None:
        self.patrols = patrols
        self.hub = hub
        self.clock: Clock = clock or SystemClock()
        self.evict_after = evict_after
        self.devices: dict[tuple[str, str], Device] = {}
        self._carried: dict[tuple[str, str], Device] = {}
        """(city, officer) -> the device their current shift assigned them."""
        self._sorted: list[Device] | None = None
        self._next_sweep = self.clock.now() + _SWEEP_EVERY

    def sorted(self) -> list[Device]:
        """Every device by city and id (kept until a device appears or is forgotten)."""
        if self._sorted is None:
            self._sorted = [d for _, d in sorted(self.devices.items())]
        return self._sorted

    def _device(self, city: str, device: str, at: float) -> Device:
        d = self.devices.get((city, device))
        if d is None:
            d = self.devices[(city, device)] = Device(city, device)
            self._sorted = None
        if at > d.heard_at:
            d.heard_at = at
        return d

    def evict(self, now: float) -> int:
        """Forget the devices nothing has come from for ``evict_after``; how many."""
        limit = now - self.evict_after
        stale = [key for key, d in self.devices.items() if d.heard_at <= limit]
        for key in stale:
            d = self.devices.pop(key)
            if d.officer is not None:
                self._unassign(d.city, d.officer, d)
        if stale:
            self._sorted = None
        return len(stale)

    def _unassign(self, city: str, officer: str, d: Device | None = None) -> None:
        """The officer no longer carries their device (or ``d``, if that is it)."""
        key = (city, officer)
        carried = self._carried.get(key)
        if carried is None or (d is not None and carried is not d):
            return
        del self._carried[key]
        if carried.officer == officer:
            carried.officer, carried.grids = None, ()

    async def write(self, records: Sequence[Record]) -> None:
        now = self.clock.now()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.evict(now)
        for r in records:
            if isinstance(r, Fix):
                d = self._device(r.city, r.device, r.received_at)
                d.last_seen = max(d.last_seen or 0.0, r.received_at)
                if r.acc is None or r.acc <= self.patrols.idle.max_acc:
                    d.good_fix_at = max(d.good_fix_at or 0.0, r.received_at)
                if d.fix is None or r.ts >= d.fix.ts:
                    d.fix = r
                    if r.battery is not None:
                        d.battery = r.battery
                    if self.hub is not None:
                        self.hub.publish("position", r.city, d.grids, {"device": self._position(d)})
                d.online = True
            elif isinstance(r, Heartbeat):
                d = self._device(r.city, r.device, r.received_at)
                d.last_seen = max(d.last_seen or 0.0, r.received_at)
                d.online = True
                if d.heartbeat is None or r.ts >= d.heartbeat.ts:
                    d.heartbeat = r
                    if r.battery is not None:
                        d.battery = r.battery
            elif isinstance(r, DeviceStatus):
                d = self._device(r.city, r.device, r.received_at)
                d.online = r.online
                if r.online:
                    d.last_seen = max(d.last_seen or 0.0, r.received_at)
            elif isinstance(r, ShiftEvent) and r.action == "start" and r.device:
                # By the index of who carries what: a pass over every device per shift
                # start would make a board of many devices slow to take shifts.
                self._unassign(r.city, r.officer)
                d = self._device(r.city, r.device, r.received_at)
                if d.officer is not None and d.officer != r.officer:
                    self._unassign(r.city, d.officer, d)  # handed over
                d.officer, d.grids = r.officer, r.grids
                self._carried[(r.city, r.officer)] = d
            elif isinstance(r, ShiftEvent) and r.action == "end":
                self._unassign(r.city, r.officer)

    @staticmethod
    def _position(d: Device) -> dict[str, Any]:
        fix = d.fix
        assert fix is not None
        return {
            "city": d.city,
            "device": d.device,
            "officer": d.officer,
            "ts": fix.ts,
            "lat": fix.lat,
            "lon": fix.lon,
            "acc": fix.acc,
        }
