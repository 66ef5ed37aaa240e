"""Notifications to send in the notifier tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from citywatch.alerting.notifiers.base import Notification

# 2026-05-09 15:30:00 in Beijing (07:30:00 UTC).
T0 = 1778311800.0


def alert(**changes: Any) -> Notification:
    """An open red patrol alert; ``changes`` replace any field."""
    base = Notification(
        id="n-0001",
        fingerprint="patrol_idle:321200:officer:off-7",
        rule="patrol_idle",
        severity="red",
        status="firing",
        city="321200",
        subject_kind="officer",
        subject_id="off-7",
        starts_at=T0,
        summary="队员 off-7 在网格 321202001002017 静止超过 10 分钟",
        receiver="lead-1",
        grid="321202001002017",
        unit="unit-roads",
        officer="off-7",
        device="dev-7",
        alert_id=42,
        sent_at=T0 + 720,
    )
    return dataclasses.replace(base, **changes)


def resolved(**changes: Any) -> Notification:
    """The same alert, resolved 25 minutes after it started."""
    return alert(**{"id": "n-0002", "status": "resolved", "ends_at": T0 + 1500, **changes})
