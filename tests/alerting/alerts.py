"""Alerts as alerting holds them, for the tests that route, stage and summarise them."""

from __future__ import annotations

import dataclasses
from typing import Any

from citywatch.alerting.model import Alert


def alert(**changes: Any) -> Alert:
    """Alert 1: officer off-7 idle (yellow) in 321200 from time 0; ``changes`` replace any field."""
    base = Alert(
        id=1,
        fingerprint="fp",
        rule="patrol_idle",
        severity="yellow",
        city="321200",
        subject_kind="officer",
        subject="off-7",
        starts_at=0.0,
        opened_at=0.0,
    )
    return dataclasses.replace(base, **changes)
