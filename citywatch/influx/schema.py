"""How records map to InfluxDB measurements; docs/schema.md describes the result.

Tags stay few and bounded (city, device, officer, event, unit, category, and
the rejection kind and reason); case ids and grid codes are fields. Points are
keyed by the record's own timestamp so that a redelivered message overwrites
itself: at-least-once delivery, exactly-once data.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from citywatch.influx.lineprotocol import FieldValue, encode, escape_name
from citywatch.models import (
    AlertAck,
    AlertChange,
    AlertEvent,
    CaseEvent,
    CaseKpi,
    DeviceStatus,
    Fix,
    Heartbeat,
    PatrolCoverage,
    Record,
    Rejected,
    ShiftEvent,
)


def ts_ns(ts: float) -> int:
    """Seconds to nanoseconds, rounded to the microsecond so equal inputs give equal keys."""
    return round(ts * 1_000_000) * 1000


def _spread(ts: float, key: str) -> int:
    # Points in one series that share a timestamp overwrite each other. Case
    # events of many cases share a series, so each gets a stable sub-microsecond
    # offset from its id: distinct cases do not collide, a repeat still does.
    return ts_ns(ts) + zlib.crc32(key.encode()) % 1000


_GPS_HEADS: dict[tuple[str, str], str] = {}


def fix_line(r: Fix) -> str:
    """The ``gps`` point of a fix (hot path: formatted by hand; ids are validated)."""
    city, device, ts, lat, lon, _, acc, speed, heading, alt, battery, seq, source = r
    head = _GPS_HEADS.get((city, device))
    if head is None:
        if len(_GPS_HEADS) > 100_000:
            _GPS_HEADS.clear()
        head = _GPS_HEADS[(city, device)] = (
            f"gps,city={escape_name(city)},device={escape_name(device)} lat="
        )
    line = f"{head}{lat!r},lon={lon!r}"
    if acc is not None:
        line += f",acc={acc!r}"
    if speed is not None:
        line += f",speed={speed!r}"
    if heading is not None:
        line += f",heading={heading!r}"
    if alt is not None:
        line += f",alt={alt!r}"
    if battery is not None:
        line += f",battery={battery!r}"
    if seq is not None:
        line += f",seq={seq}i"
    if source != "handheld":
        line += f',source="{source}"'
    return f"{line} {round(ts * 1_000_000) * 1000}"


def heartbeat_line(r: Heartbeat) -> str:
    """The ``heartbeat`` point; ``recv_lag`` is receive time minus the handheld's ``ts``."""
    return encode(
        "heartbeat",
        {"city": r.city, "device": r.device},
        {
            "battery": None if r.battery is None else float(r.battery),
            "charging": r.charging,
            "signal": None if r.signal is None else float(r.signal),
            "app": r.app,
            "gps": r.gps,
            "recv_lag": round(r.received_at - r.ts, 3),
        },
        ts_ns(r.ts),
    )


def status_line(r: DeviceStatus) -> str:
    """The ``device_status`` point."""
    return encode(
        "device_status",
        {"city": r.city, "device": r.device},
        {"online": r.online, "status": "online" if r.online else "offline", "retained": r.retained},
        ts_ns(r.ts),
    )


_ON_DUTY = {"start": True, "break_end": True, "end": False, "break_start": False}


def shift_line(r: ShiftEvent) -> str:
    """The ``shift`` point; ``on_duty`` says whether the officer patrols from now on."""
    return encode(
        "shift",
        {"city": r.city, "officer": r.officer, "action": r.action},
        {
            "on_duty": _ON_DUTY.get(r.action, False),
            "device": r.device,
            "grids": ",".join(r.grids) if r.grids else None,
            "lead": r.lead,
            "role": r.role,
        },
        ts_ns(r.ts),
    )


def case_line(r: CaseEvent) -> str:
    """The ``case_event`` point."""
    return encode(
        "case_event",
        {"city": r.city, "event": r.event, "unit": r.unit or "", "category": r.category or ""},
        {
            "case": r.case,
            "urgent": r.urgent,
            "grid": r.grid,
            "lat": r.lat,
            "lon": r.lon,
            "officer": r.officer,
            "extend_s": r.extend,
        },
        _spread(r.ts, r.case + r.event),
    )


def rejected_line(r: Rejected) -> str:
    """The ``ingest_rejected`` point."""
    return encode(
        "ingest_rejected",
        {"city": r.city or "", "kind": r.kind, "reason": r.reason},
        {"count": r.total, "topic": r.topic, "detail": r.detail[:512], "index": r.element},
        _spread(r.received_at, f"{r.topic}#{r.element}#{r.ref}#{r.detail}"),
    )


def alert_line(r: AlertEvent) -> str:
    """The ``alert_event`` point: a rule's condition fired or resolved."""
    labels = r.labels
    fields: dict[str, FieldValue | None] = {
        "subject": r.subject,
        "subject_kind": r.subject_kind,
        "fingerprint": r.fingerprint,
        "summary": r.summary or None,
    }
    for name in ("step", "grid", "unit", "category", "officer", "device", "lead"):
        fields[name] = labels.get(name)
    for name, value in r.values.items():
        fields[name] = float(value)
    return encode(
        "alert_event",
        {"city": r.city, "rule": r.rule, "status": r.status, "severity": r.severity},
        fields,
        _spread(r.at, r.fingerprint + r.status),
    )


def alert_change_line(r: AlertChange) -> str:
    """The ``alert`` point: one change in an alert's lifecycle."""
    fields: dict[str, FieldValue | None] = {
        "alert_id": r.alert_id,
        "status": r.status,
        "fingerprint": r.fingerprint,
        "subject": r.subject,
        "subject_kind": r.subject_kind,
        "step": r.step,
        "grid": r.grid,
        "unit": r.unit,
        "officer": r.officer,
        "receivers": r.receivers or None,
        "by": r.by,
        "note": r.note,
    }
    return encode(
        "alert",
        {"city": r.city, "rule": r.rule, "severity": r.severity, "change": r.change},
        fields,
        _spread(r.at, f"{r.alert_id}:{r.change}:{r.step}"),
    )


def ack_line(r: AlertAck) -> str:
    """The ``alert_ack`` point: a receiver acknowledged an alert from a handheld."""
    return encode(
        "alert_ack",
        {"city": r.city},
        {"receiver": r.receiver, "alert_id": r.alert_id, "note": r.note},
        _spread(r.ts, f"{r.receiver}:{r.alert_id}"),
    )


def kpi_line(r: CaseKpi) -> str:
    """The ``case_kpi`` point, at the period's start: a recomputation overwrites it."""
    fields: dict[str, FieldValue | None] = {"as_of": float(r.as_of), **r.values}
    return encode(
        "case_kpi", {"city": r.city, "unit": r.unit, "period": r.period}, fields, ts_ns(r.start)
    )


def coverage_line(r: PatrolCoverage) -> str:
    """The ``patrol_coverage`` point, at the shift's start: updates overwrite it."""
    return encode(
        "patrol_coverage",
        {"city": r.city, "officer": r.officer},
        {
            "assigned": r.assigned,
            "visited": r.visited,
            "share": r.visited / r.assigned if r.assigned else None,
            "distance_m": float(r.distance_m),
            "as_of": float(r.as_of),
        },
        ts_ns(r.shift_start),
    )


ENCODERS: dict[type, Callable[..., str]] = {
    PatrolCoverage: coverage_line,
    AlertEvent: alert_line,
    AlertChange: alert_change_line,
    AlertAck: ack_line,
    Fix: fix_line,
    Heartbeat: heartbeat_line,
    DeviceStatus: status_line,
    ShiftEvent: shift_line,
    CaseEvent: case_line,
    Rejected: rejected_line,
    CaseKpi: kpi_line,
}


def to_line(record: Record) -> str:
    """The line-protocol point of any record."""
    return ENCODERS[type(record)](record)
