"""Decoder for OwnTracks ``owntracks/{user}/{device}``, so a stock app works as a beacon."""

from __future__ import annotations

from citywatch.collectors import fields as f
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.message import Incoming, Route
from citywatch.collectors.reject import Reject
from citywatch.models import DeviceStatus, Fix, Record


def decode_owntracks(route: Route, msg: Incoming, cfg: IngestConfig) -> list[Record]:
    """``_type: location`` becomes a fix (``vel`` km/h to m/s); ``lwt`` means offline."""
    mapping = cfg.owntracks
    device = mapping.devices.get(route.subject)
    if device is None:
        raise Reject(
            "unknown_device",
            f"owntracks {route.subject!r} is not mapped in ingest.owntracks.devices",
        )
    o = f.expect_object(f.parse_json(msg.payload), "owntracks")
    kind = o.get("_type")
    if kind == "lwt":
        return [DeviceStatus(mapping.city, device, False, msg.received_at, msg.received_at)]
    if kind != "location":
        raise Reject("unsupported_type", f"_type: {str(kind)[:40]!r} is not location or lwt")
    ts = f.timestamp(o, "tst", msg.received_at, cfg.max_future, cfg.max_age)
    lat = f.number(o, "lat", -90.0, 90.0, required=True)
    lon = f.number(o, "lon", -180.0, 180.0, required=True)
    assert lat is not None and lon is not None
    if lat == 0.0 and lon == 0.0:
        raise Reject("out_of_range", "lat/lon: (0, 0) is not a fix")
    vel = f.number(o, "vel", 0.0, 3600.0)
    return [
        Fix(
            mapping.city,
            device,
            ts,
            lat,
            lon,
            msg.received_at,
            acc=f.number(o, "acc", 0.0, 100_000.0),
            speed=None if vel is None else vel / 3.6,
            heading=f.number(o, "cog", 0.0, 360.0),
            alt=f.number(o, "alt", -1000.0, 20_000.0),
            battery=f.number(o, "batt", 0.0, 100.0),
            source="owntracks",
        )
    ]
