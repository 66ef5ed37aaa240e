"""Acknowledgements sent from handhelds (``{root}/{city}/acks/{receiver}``).

They reach alerting as :class:`~citywatch.models.AlertAck` records through the
collector's sink. Only a receiver who was told of an alert may acknowledge it;
an acknowledgement that cannot be applied goes to the dead-letter topic as
``ack_refused`` and is never raised (the collector must not stall on it). One
repeated by the receiver who acknowledged (an MQTT redelivery) is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from citywatch.alerting.lifecycle import LifecycleError
from citywatch.alerting.model import RESOLVED, Alert
from citywatch.models import AlertAck, Rejected
from citywatch.sink import RejectSink
from citywatch.topics import ack_topic

log = logging.getLogger("citywatch.alerts")


Lookup = Callable[[int], Awaitable[Alert | None]]
Acknowledge = Callable[[int, str, str | None], Awaitable[Alert]]


def refusal(a: Alert | None, ack: AlertAck) -> str | None:
    """Why ``ack`` cannot be applied to ``a``: None if it can, ``""`` if it is a repeat."""
    if a is None:
        return f"alert {ack.alert_id} is unknown"
    if a.city != ack.city:
        return f"alert {a.id} is not an alert of city {ack.city}"
    if ack.receiver not in a.told:
        return f"{ack.receiver} was not told of alert {a.id}, so cannot acknowledge it"
    if a.ack_by == ack.receiver:
        return ""
    if a.status == RESOLVED:
        return f"alert {a.id} is already resolved"
    if a.ack_by is not None:
        return f"alert {a.id} was already acknowledged by {a.ack_by}"
    return None


async def apply_ack(
    ack: AlertAck,
    lookup: Lookup,
    acknowledge: Acknowledge,
    rejects: RejectSink | None,
    topic_root: str,
) -> None:
    """Apply one acknowledgement, or refuse it to the dead-letter topic."""
    why = refusal(await lookup(ack.alert_id), ack)
    if why is None:
        try:
            await acknowledge(ack.alert_id, ack.receiver, ack.note)
        except KeyError:
            why = f"alert {ack.alert_id} is unknown"
        except LifecycleError as exc:
            # The alert changed since it was looked at (e.g. resolved meanwhile).
            again = refusal(await lookup(ack.alert_id), ack)
            why = str(exc) if again is None else again
        else:
            log.info("alert %d acknowledged by %s from a handheld", ack.alert_id, ack.receiver)
            return
    if not why:
        return  # the receiver's own acknowledgement again (a redelivery): already done
    log.info("acknowledgement of alert %d by %s refused: %s", ack.alert_id, ack.receiver, why)
    if rejects is None:
        return
    topic = ack_topic(topic_root, ack.city, ack.receiver)
    rejected = Rejected("ack", "ack_refused", why, topic, ack.received_at, ack.city)
    doc: dict[str, Any] = {"alert_id": ack.alert_id, "ts": ack.ts}
    if ack.note is not None:
        doc["note"] = ack.note
    await rejects.reject(rejected, orjson.dumps(doc))
