"""What a decoder is given (the route of the topic, the message) and what it must return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from citywatch.collectors.config import IngestConfig
from citywatch.models import Record


class Route(NamedTuple):
    """Where a topic leads: the decoder ``kind``, the city and the subject id.

    The subject is the device, officer or case id, or for ``ack`` the receiver id
    (for OwnTracks, ``user/device``, and no city).
    """

    kind: str
    city: str
    subject: str


@dataclass(slots=True)
class Incoming:
    """One message as received from the broker."""

    topic: str
    payload: bytes
    received_at: float
    retained: bool = False
    mid: int = 0
    epoch: int = 0


Decoder = Callable[[Route, Incoming, IngestConfig], list[Record]]
"""A decoder turns one message into records.

It raises :class:`collectors.reject.Reject` when the whole message is bad; when
only some elements of a batch are bad it returns :class:`citywatch.models.Rejected`
records for those among the good ones.
"""
