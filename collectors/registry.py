"""The one table of collectors: topic kind -> decoder. A new one is a module plus a line."""

from __future__ import annotations

from collectors.acks import decode_ack
from collectors.cases import decode_case_event
from collectors.handheld import decode_gps, decode_heartbeat, decode_status
from collectors.message import Decoder
from collectors.owntracks import decode_owntracks
from collectors.shifts import decode_shift

COLLECTORS: dict[str, Decoder] = {
    "gps": decode_gps,
    "heartbeat": decode_heartbeat,
    "status": decode_status,
    "shift": decode_shift,
    "case": decode_case_event,
    "owntracks": decode_owntracks,
    "ack": decode_ack,
}
