"""The topics, clock and settings the decoder tests send their samples with."""

from __future__ import annotations

from citywatch.collectors.config import IngestConfig, OwnTracksConfig

CITY = "321200"
NOW = 1795313731.0  # 2026-11-22T02:15:31Z, citywatch's clock on receipt
TS = 1795313730.25  # 2026-11-22T02:15:30.25Z
GPS = f"citywatch/{CITY}/devices/cgt-0042/gps"
HEARTBEAT = f"citywatch/{CITY}/devices/cgt-0042/heartbeat"
STATUS = f"citywatch/{CITY}/devices/cgt-0042/status"
SHIFT = f"citywatch/{CITY}/officers/INS0042/shift"
CASE = f"citywatch/{CITY}/cases/3212002026112200417/events"
OWNTRACKS = "owntracks/alice/phone"
CFG = IngestConfig(owntracks=OwnTracksConfig(city=CITY, devices={"alice/phone": "ot-alice"}))
