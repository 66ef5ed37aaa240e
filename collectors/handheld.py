"""Decoders for the handheld topics: ``gps``, ``heartbeat`` and ``status``."""

from __future__ import annotations

from citywatch.collectors import fields as f
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.reject import Reject
from citywatch.geo import to_wgs84
from citywatch.models import CRS_NAMES, DeviceStatus, Fix, Heartbeat, Record, Rejected

_MAX_INT64 = 2**63 - 1


def position(obj: f.Obj, lat_key: str = "lat", lon_key: str = "lon") -> tuple[float, float]:
    """A required position, converted to WGS-84 from ``crs`` when given."""
    lat = f.number(obj, lat_key, -90.0, 90.0, required=True)
    lon = f.number(obj, lon_key, -180.0, 180.0, required=True)
    assert lat is not None and lon is not None
    if lat == 0.0 and lon == 0.0:
        raise Reject("out_of_range", f"{lat_key}/{lon_key}: (0, 0) is not a fix")
    crs = obj.get("crs")
    if crs is not None and crs != "wgs84":
        crs = f.choice(obj, "crs", CRS_NAMES)
        assert crs is not None
        lon, lat = to_wgs84(lon, lat, crs)
    return lat, lon


def _opt(o: f.Obj, key: str, lo: float, hi: float) -> float | None:
    # Fast path for the common case (absent, or a float in range); the general
    # check in ``fields.number`` produces the precise error otherwise.
    v = o.get(key)
    if v is None or (type(v) is float and lo <= v <= hi):
        return v
    return f.number(o, key, lo, hi)


def fix_from(route: Route, obj: object, msg: Incoming, cfg: IngestConfig) -> Fix:
    """One fix object of a ``gps`` message."""
    if type(obj) is not dict:
        f.expect_object(obj, "fix")
    o: f.Obj = obj  # type: ignore[assignment]
    now = msg.received_at
    ts = f.timestamp(o, "ts", now, cfg.max_future, cfg.max_age)
    lat = o.get("lat")
    lon = o.get("lon")
    if not (
        type(lat) is float
        and type(lon) is float
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
        and (lat or lon)
        and "crs" not in o
    ):
        lat, lon = position(o)
    seq = o.get("seq")
    if seq is not None and not (type(seq) is int and 0 <= seq <= _MAX_INT64):
        seq = f.integer(o, "seq", 0, _MAX_INT64)
    return Fix(
        route.city,
        route.subject,
        ts,
        lat,
        lon,
        now,
        _opt(o, "acc", 0.0, 100_000.0),
        _opt(o, "speed", 0.0, 1000.0),
        _opt(o, "heading", 0.0, 360.0),
        _opt(o, "alt", -1000.0, 20_000.0),
        _opt(o, "battery", 0.0, 100.0),
        seq,
    )


def decode_gps(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """A fix, or an array of fixes of which the valid ones are kept."""
    body = f.parse_json(msg.payload)
    if type(body) is dict:
        return [fix_from(route, body, msg, cfg)]
    if type(body) is not list:
        raise Reject(
            "wrong_type", f"gps: expected a fix object or an array, got {f._json_type(body)}"
        )
    if len(body) > cfg.max_batch:
        raise Reject("too_many_fixes", f"gps: {len(body)} fixes, at most {cfg.max_batch}")
    if not body:
        raise Reject("missing_field", "gps: empty array")
    out: list[Record] = []
    for i, item in enumerate(body):
        try:
            out.append(fix_from(route, item, msg, cfg))
        except Reject as exc:
            out.append(
                Rejected(
                    "gps",
                    exc.reason,
                    exc.detail,
                    msg.topic,
                    msg.received_at,
                    route.city,
                    i,
                    msg.mid,
                )
            )
    return out


def decode_heartbeat(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """A heartbeat: the handheld is alive, whatever its GPS says."""
    o = f.expect_object(f.parse_json(msg.payload), "heartbeat")
    return [
        Heartbeat(
            route.city,
            route.subject,
            f.timestamp(o, "ts", msg.received_at, cfg.max_future, cfg.max_age),
            msg.received_at,
            battery=f.number(o, "battery", 0.0, 100.0),
            charging=f.boolean(o, "charging"),
            signal=f.number(o, "signal", -150.0, 0.0),
            app=f.text(o, "app", 64),
            gps=f.boolean(o, "gps"),
        )
    ]


_STATUS = frozenset({"online", "offline"})


def decode_status(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """``online``/``offline`` as plain text (the MQTT will) or ``{"status", "ts"}``."""
    raw = msg.payload.strip()
    status: str | None
    if raw in (b"online", b"offline"):
        status, ts = raw.decode(), msg.received_at
    else:
        o = f.expect_object(f.parse_json(msg.payload), "status")
        status = f.choice(o, "status", _STATUS, required=True)
        ts = f.timestamp_or_now(o, "ts", msg.received_at, cfg.max_future, cfg.max_age)
    return [
        DeviceStatus(
            route.city, route.subject, status == "online", ts, msg.received_at, msg.retained
        )
    ]
