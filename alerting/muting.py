"""The muting stage: whether, and by what, an alert's notifications are held back now.

Alertmanager mutes in two steps before it routes: inhibition (an alert that is
firing mutes others that follow from it), then silences (people mute what they
expect). This stage has the same two slots and answers with the id of what
mutes, which goes into the :class:`~alerting.decision.Decision`:

1. inhibition: no rules yet. Its rules will go in :meth:`Muting.muted_by`,
   before the silences, and answer with the id of the inhibiting alert
   (e.g. a handheld offline inhibits its officer's GPS lost).
2. silences: :class:`~alerting.silences.Silence`, made through the API.

A muted alert still changes state and is still stored; its escalation clock
and reminders stand still until nothing mutes it (:func:`alerting.lifecycle.due`).
The stage is pure: the service keeps the store and the timers of the silences.
"""

from __future__ import annotations

from citywatch.alerting.model import Alert
from citywatch.alerting.silences import Silence, silenced_by


class Muting:
    """The silences in force (and, later, the inhibition rules), asked once per decision."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}
        """Every silence not yet forgotten, by id: pending, active, or recently ended."""

    def muted_by(self, alert: Alert, now: float) -> str | None:
        """The id of what mutes ``alert`` at ``now``, or None.

        Inhibition rules, when there are any, are asked here first.
        """
        return self.silenced_by(alert, now)

    def silenced_by(self, alert: Alert, now: float) -> str | None:
        """The id of an active silence matching ``alert``, or None."""
        if not self.silences:
            return None
        return silenced_by(self.silences, alert.fields(), now)

    def put(self, s: Silence) -> None:
        """Add ``s``, or replace the silence of its id (one expired early)."""
        self.silences[s.id] = s

    def forget(self, silence_id: str) -> None:
        """Drop a silence (one never in force, or ended long enough ago)."""
        self.silences.pop(silence_id, None)

    def forget_ended(self, before: float) -> None:
        """Drop the silences that ended before ``before``."""
        for s in [s for s in self.silences.values() if s.ends_at < before]:
            del self.silences[s.id]
