"""The one table of message kinds: each MQTT message of the contract, declared once.

A row says, for one kind: its name (the ``kind`` label of the ingest metrics and of
``Rejected``), its topic (a pattern of :mod:`citywatch.topics`), its decoder (``None``
for what the service publishes), the record types it becomes (each encoded for
InfluxDB by ``citywatch.influx.schema.ENCODERS``) and its JSON Schema
(``schemas/<schema>.json``). The router parses topics by walking this table, the
batch decoder dispatches through it, and ``tests/test_kinds.py`` fails when a row
lacks a part: the decoder, an encoder, the schema and its examples, or the rows of
docs/protocol.md and docs/schema.md. docs/architecture.md has the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from citywatch.collectors.acks import decode_ack
from citywatch.collectors.cases import decode_case_event
from citywatch.collectors.handheld import decode_gps, decode_heartbeat, decode_status
from citywatch.collectors.message import Decoder
from citywatch.collectors.owntracks import decode_owntracks
from citywatch.collectors.shifts import decode_shift
from citywatch.models import (
    AlertAck,
    AlertChange,
    CaseEvent,
    DeviceStatus,
    Fix,
    Heartbeat,
    Record,
    Rejected,
    ShiftEvent,
)
from citywatch.topics import (
    ACK,
    ALERT,
    CASE_EVENTS,
    DEADLETTER,
    GPS,
    HEARTBEAT,
    OWNTRACKS,
    SHIFT,
    STATUS,
    TopicPattern,
)


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of message: its topic, decoder, records and schema."""

    name: str
    topic: TopicPattern
    decoder: Decoder | None
    """Payload to records; ``None`` for the service's own output, which it skips on ingest."""
    records: tuple[type[Record], ...]
    """What it becomes: on ingest, the decoder's records; for output, what InfluxDB keeps of it."""
    schema: str
    """The stem of its JSON Schema: ``schemas/<schema>.json``, ``schemas/examples/<schema>/``."""

    @property
    def inbound(self) -> bool:
        """Published to citywatch (decoded), rather than by it."""
        return self.decoder is not None


KINDS: Final[tuple[Kind, ...]] = (
    Kind("gps", GPS, decode_gps, (Fix,), "gps"),
    Kind("heartbeat", HEARTBEAT, decode_heartbeat, (Heartbeat,), "heartbeat"),
    Kind("status", STATUS, decode_status, (DeviceStatus,), "status"),
    Kind("shift", SHIFT, decode_shift, (ShiftEvent,), "shift"),
    Kind("case", CASE_EVENTS, decode_case_event, (CaseEvent,), "case-event"),
    Kind("owntracks", OWNTRACKS, decode_owntracks, (Fix, DeviceStatus), "owntracks-location"),
    Kind("ack", ACK, decode_ack, (AlertAck,), "alert-ack"),
    Kind("deadletter", DEADLETTER, None, (Rejected,), "deadletter"),
    Kind("alert", ALERT, None, (AlertChange,), "alert-push"),
)

COLLECTORS: Final[dict[str, Decoder]] = {k.name: k.decoder for k in KINDS if k.decoder is not None}
"""Kind name -> decoder, for the batch decoder's dispatch."""
