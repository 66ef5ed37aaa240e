"""What a decoder is given and what it must return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from citywatch.models import Record
from collectors.config import IngestConfig
from collectors.topics import Route


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
