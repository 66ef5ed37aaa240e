"""The dead-letter message: why a message was refused, with (a bounded copy of) it.

The collector publishes dead letters for messages it cannot decode; later
stages (the case rule's impossible transitions, alerting's refused acknowledgements,
the InfluxDB writer's refused points) use :class:`DeadLetters`.

A message yields at most one dead letter, of bounded size: a GPS array with
refused fixes yields one that counts them by reason and details the first
:data:`MAX_ELEMENTS`, not one per fix (a 2 KB array of 1,000 bad fixes once
produced 1,000 dead letters, over 2 MB).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import orjson

from citywatch.models import Rejected
from citywatch.sink import Sink
from citywatch.topics import deadletter_topic

MAX_ELEMENTS = 10
"""How many refused elements of one message a dead letter details (``elements``)."""
MAX_ELEMENT_DETAIL = 200
"""Characters of each detailed element's ``detail`` kept."""


class Publishes(Protocol):
    """Queues a message for the broker: :class:`citywatch.publisher.MqttPublisher`, or the
    collector's own connection."""

    def publish(self, topic: str, payload: bytes) -> object: ...


def deadletter_payload(rej: Rejected, payload: bytes, max_bytes: int) -> bytes:
    """The JSON body of the dead letter for one refused message."""
    return orjson.dumps(_letter(rej, payload, max_bytes))


def elements_deadletter_payload(
    refused: Sequence[Rejected], payload: bytes, max_bytes: int
) -> bytes:
    """The one dead letter of a message some of whose array elements were refused.

    ``refused`` holds every refused element, in array order. ``reason``, ``detail``
    and ``index`` are the first one's, as in a dead letter for a single element;
    ``rejected`` counts them all, ``reasons`` counts them by reason, and ``elements``
    details the first :data:`MAX_ELEMENTS`.
    """
    first = refused[0]
    reasons: dict[str, int] = {}
    for r in refused:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    elements: list[dict[str, object]] = []
    for r in refused[:MAX_ELEMENTS]:
        element: dict[str, object] = {} if r.element is None else {"index": r.element}
        element.update(reason=r.reason, detail=r.detail[:MAX_ELEMENT_DETAIL])
        elements.append(element)
    extra = {"rejected": len(refused), "reasons": reasons, "elements": elements}
    return orjson.dumps(_letter(first, payload, max_bytes, extra))


def _letter(
    rej: Rejected, payload: bytes, max_bytes: int, extra: dict[str, object] | None = None
) -> dict[str, object]:
    body = payload[:max_bytes]
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if (
            exc.reason == "unexpected end of data"
            and exc.start >= len(body) - 3
            and len(payload) > max_bytes
        ):
            # The cut fell inside a multi-byte character; drop the partial one.
            text, encoding = body[: exc.start].decode("utf-8", "replace"), "utf-8"
        else:
            text, encoding = base64.b64encode(body).decode(), "base64"
    doc: dict[str, object] = {
        "reason": rej.reason,
        "detail": rej.detail,
        "topic": rej.topic,
        "received_at": datetime.fromtimestamp(rej.received_at, UTC).isoformat(
            timespec="milliseconds"
        ),
    }
    if rej.element is not None:
        doc["index"] = rej.element
    if extra:
        doc.update(extra)
    doc.update(
        payload=text,
        payload_encoding=encoding,
        size=len(payload),
        truncated=len(payload) > max_bytes,
    )
    return doc


class DeadLetters:
    """Refused observations from stages past the collector: published and recorded."""

    def __init__(self, publisher: Publishes, store: Sink, topic_root: str, max_bytes: int) -> None:
        self.publisher = publisher
        self.store = store
        self.topic_root = topic_root
        self.max_bytes = max_bytes
        self._writes: set[asyncio.Task[None]] = set()

    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        topic = deadletter_topic(self.topic_root, rejected.city)
        self.publisher.publish(topic, deadletter_payload(rejected, payload, self.max_bytes))
        # Not awaited: the caller holds up its own pipeline meanwhile (see LoggingAlertSink).
        task = asyncio.create_task(self.store.write([rejected]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def aclose(self) -> None:
        """Wait for the record writes under way."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
