"""Which handhelds the collector takes data from, and which shift claims it believes.

A handheld is known when the roster lists it or a current shift names it. Data
from any other (an id anyone can choose: under the broker's ACL the device id
is the MQTT client id) is taken up to ``devices.max_unknown`` distinct handhelds
per city (and ``devices.max_unknown_total`` over all cities), or not at all with
``devices.unknown: deadletter``; beyond, it is refused as ``unknown_device``, so
a flood of made-up ids cannot grow the state of the service without bound. Of
those refusals at most ``devices.unknown_deadletters`` a minute are published as
dead letters; the rest are counted only. What is remembered of a handheld is
forgotten once nothing has come from it for ``devices.evict_after``.

With a roster, a shift start is refused as ``roster_mismatch`` unless the
officer is in the roster and the shift names the roster's lead and one of the
officer's handhelds.
"""

from __future__ import annotations

import logging

from citywatch.clock import Clock
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.models import ShiftEvent
from citywatch.roster import DevicesConfig, Key, Roster

log = logging.getLogger(__name__)

_WINDOW = 60.0  # the dead-letter budget is per minute
_SWEEP_EVERY = 60.0  # forgetting is a pass over what is remembered: at most once a minute


class Admission:
    """The collector's register of handhelds; consulted for every device message and shift."""

    def __init__(
        self,
        cfg: DevicesConfig,
        roster: Roster | None,
        clock: Clock,
        metrics: CollectorMetrics,
    ) -> None:
        self.cfg = cfg
        self.roster = roster
        self.clock = clock
        self.metrics = metrics
        self._seen: dict[Key, float] = {}
        """Handhelds remembered here (named by a shift, or unknown and let in): last heard of."""
        self._named: dict[Key, str] = {}
        """Handheld -> the officer whose current shift names it."""
        self._shifts: dict[Key, str] = {}
        """(city, officer) -> the handheld their current shift names."""
        self._unknown: dict[str, int] = {}
        """Per city, how many of ``_seen`` are unknown (not named by a shift)."""
        self._unknown_total = 0
        self._full = False
        self._window = -_WINDOW
        self._letters = 0
        self._limiting = False
        self._suppressed = 0
        self._next_sweep = clock.now() + _SWEEP_EVERY
        metrics.unknown_devices.set_function(lambda: self._unknown_total)

    def reconfigure(self, cfg: DevicesConfig, roster: Roster | None) -> None:
        """A new ``devices:`` section or roster, in force from the next message."""
        self.cfg, self.roster = cfg, roster

    def now(self) -> float:
        """The time for this batch; forgets what is due to be forgotten first."""
        now = self.clock.now()
        self._roll(now)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.evict(now)
        return now

    # -- device messages ------------------------------------------------------------

    def device(self, city: str, device: str, now: float) -> str:
        """Why data from the handheld is refused (``unknown_device``); "" if it is taken."""
        key = (city, device)
        roster = self.roster
        if roster is not None and key in roster.devices:
            return ""
        seen = self._seen
        if key in seen:
            seen[key] = now
            return ""
        cfg = self.cfg
        if cfg.unknown == "deadletter":
            return self._unknown_detail(city, device, "devices.unknown is deadletter")
        if cfg.max_unknown is None and cfg.max_unknown_total is None:
            return ""  # unbounded by configuration: nothing to count
        in_city = self._unknown.get(city, 0)
        if cfg.max_unknown is not None and in_city >= cfg.max_unknown:
            return self._refuse_full(city, device, f"devices.max_unknown ({cfg.max_unknown})")
        if cfg.max_unknown_total is not None and self._unknown_total >= cfg.max_unknown_total:
            bound = f"devices.max_unknown_total ({cfg.max_unknown_total})"
            return self._refuse_full(city, device, bound)
        seen[key] = now
        self._unknown[city] = in_city + 1
        self._unknown_total += 1
        return ""

    def _unknown_detail(self, city: str, device: str, why: str) -> str:
        known = "in the roster nor named" if self.roster is not None else "named"
        return f"device {device} is not {known} by a current shift of city {city}; {why}"

    def _refuse_full(self, city: str, device: str, bound: str) -> str:
        if not self._full:
            self._full = True
            log.warning(
                "unknown handhelds reached %s (city %s): data from further ones is refused "
                "as unknown_device until some are forgotten (devices.evict_after)",
                bound,
                city,
            )
        return self._unknown_detail(city, device, f"{bound} reached")

    def _roll(self, now: float) -> None:
        """A new minute of the dead-letter budget; the end of limiting is told once."""
        if now - self._window < _WINDOW:
            return
        if self._limiting and self._letters <= self.cfg.unknown_deadletters:
            self._limiting = False
            log.warning(
                "unknown_device dead letters back under %d a minute; %d were counted only",
                self.cfg.unknown_deadletters,
                self._suppressed,
            )
            self._suppressed = 0
        self._window, self._letters = now, 0

    def deadletter(self, now: float) -> bool:
        """Whether to publish one more ``unknown_device`` dead letter (the rest are counted)."""
        self._roll(now)
        self._letters += 1
        if self._letters <= self.cfg.unknown_deadletters:
            return True
        if not self._limiting:
            self._limiting = True
            log.warning(
                "more than %d unknown_device dead letters a minute: the rest are counted only "
                "(citywatch_ingest_deadletters_suppressed_total)",
                self.cfg.unknown_deadletters,
            )
        self._suppressed += 1
        self.metrics.deadletters_suppressed.labels("unknown_device").inc()
        return False

    # -- shifts ---------------------------------------------------------------------

    def shift(self, ev: ShiftEvent, now: float) -> str:
        """Why the shift event is refused (``roster_mismatch``); "" if it stands.

        A start that stands makes its handheld known until the shift ends.
        """
        key = (ev.city, ev.officer)
        if ev.action == "start":
            if self.roster is not None:
                why = self.roster.mismatch(ev.city, ev.officer, ev.lead, ev.device)
                if why:
                    return why
            assert ev.device is not None
            self._release(key)
            dev = (ev.city, ev.device)
            if dev not in self._named and dev in self._seen:
                self._forget_unknown(dev)
            self._shifts[key] = ev.device
            self._named[dev] = ev.officer
            self._seen[dev] = now
        elif ev.action == "end":
            self._release(key)
        return ""

    def _release(self, officer: Key) -> None:
        """The officer's shift is over: their handheld is no longer known through it."""
        device = self._shifts.pop(officer, None)
        if device is None:
            return
        dev = (officer[0], device)
        if self._named.get(dev) == officer[1]:
            del self._named[dev]
            self._seen.pop(dev, None)

    # -- forgetting -----------------------------------------------------------------

    def evict(self, now: float) -> int:
        """Forget the handhelds not heard of for ``devices.evict_after``; how many."""
        limit = now - self.cfg.evict_after
        stale = [k for k, t in self._seen.items() if t <= limit]
        freed = 0
        for key in stale:
            officer = self._named.pop(key, None)
            if officer is None:
                self._forget_unknown(key)
                freed += 1
            else:
                self._shifts.pop((key[0], officer), None)
                del self._seen[key]
        if freed and self._full:
            self._full = False
            log.warning(
                "%d unknown handhelds not heard of for %.0fs forgotten: unknown ones are "
                "taken again",
                freed,
                self.cfg.evict_after,
            )
        return len(stale)

    def _forget_unknown(self, key: Key) -> None:
        del self._seen[key]
        city = key[0]
        n = self._unknown[city] - 1
        if n:
            self._unknown[city] = n
        else:
            del self._unknown[city]
        self._unknown_total -= 1
