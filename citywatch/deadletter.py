"""The dead-letter message: why a message was refused, with (a bounded copy of) it.

The collector publishes dead letters for messages it cannot decode; later
stages (the case rule's impossible transitions, alerting's refused acknowledgements,
the InfluxDB writer's refused points) use :class:`DeadLetters`.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Protocol

import orjson

from citywatch.models import Rejected
from citywatch.sink import Sink


class Publishes(Protocol):
    """Queues a message for the broker: :class:`citywatch.publisher.MqttPublisher`, or the
    collector's own connection."""

    def publish(self, topic: str, payload: bytes) -> object: ...


def deadletter_payload(rej: Rejected, payload: bytes, max_bytes: int) -> bytes:
    """The JSON body published to ``{root}/{city}/deadletter``."""
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
    doc.update(
        payload=text,
        payload_encoding=encoding,
        size=len(payload),
        truncated=len(payload) > max_bytes,
    )
    return orjson.dumps(doc)


class DeadLetters:
    """Refused observations from stages past the collector: published and recorded."""

    def __init__(self, publisher: Publishes, store: Sink, topic_root: str, max_bytes: int) -> None:
        self.publisher = publisher
        self.store = store
        self.topic_root = topic_root
        self.max_bytes = max_bytes
        self._writes: set[asyncio.Task[None]] = set()

    async def reject(self, rejected: Rejected, payload: bytes) -> None:
        topic = f"{self.topic_root}/{rejected.city or 'unknown'}/deadletter"
        self.publisher.publish(topic, deadletter_payload(rejected, payload, self.max_bytes))
        # Not awaited: the caller holds up its own pipeline meanwhile (see LoggingAlertSink).
        task = asyncio.create_task(self.store.write([rejected]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def aclose(self) -> None:
        """Wait for the record writes under way."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
