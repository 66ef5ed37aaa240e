"""Turns a batch of received messages into records and dead letters."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from citywatch.collectors.admission import Admission
from citywatch.collectors.config import IngestConfig
from citywatch.collectors.message import Decoder, Incoming
from citywatch.collectors.metrics import CollectorMetrics
from citywatch.collectors.registry import COLLECTORS
from citywatch.collectors.reject import Reject
from citywatch.collectors.topics import Router
from citywatch.deadletter import deadletter_payload, elements_deadletter_payload
from citywatch.models import Fix, Record, Rejected, ShiftEvent
from citywatch.topics import deadletter_topic

log = logging.getLogger(__name__)

_DEVICE_KINDS = frozenset({"gps", "heartbeat", "status"})


@dataclass
class Decoded:
    """The outcome of one batch: records for the sink, dead letters for the broker."""

    records: list[Record] = field(default_factory=list)
    deadletters: list[tuple[str, bytes]] = field(default_factory=list)


class BatchDecoder:
    """Routes each message to its decoder and accounts for every outcome."""

    def __init__(
        self,
        cfg: IngestConfig,
        router: Router,
        metrics: CollectorMetrics,
        decoders: Mapping[str, Decoder] = COLLECTORS,
        admission: Admission | None = None,
    ) -> None:
        self.cfg = cfg
        self.router = router
        self.metrics = metrics
        self.decoders = decoders
        self.admission = admission
        """Which handhelds and shift claims are taken; None: all (as sent)."""

    def deadletter_topic(self, topic: str) -> str:
        """Where the dead letter of a message received on ``topic`` goes."""
        return deadletter_topic(self.router.root, self.router.city_of(topic))

    def decode(self, batch: Sequence[Incoming]) -> Decoded:
        out = Decoded()
        records = out.records
        received: dict[str, int] = {}
        accepted: dict[str, int] = {}
        cfg = self.cfg
        max_payload = cfg.max_payload
        route_of = self.router.route
        decoders = self.decoders
        admission = self.admission
        now = admission.now() if admission is not None else 0.0
        # Per message, its refused records (the whole message, or array elements).
        rejected: list[tuple[list[Rejected], bytes]] = []
        for msg in batch:
            kind = "unknown"
            try:
                route = route_of(msg.topic)
                if route is None:
                    continue  # the service's own output topics
                kind = route.kind
                if len(msg.payload) > max_payload:
                    raise Reject(
                        "payload_too_large", f"{len(msg.payload)} bytes, at most {max_payload}"
                    )
                if admission is not None and kind in _DEVICE_KINDS:
                    # Before the payload is read: refusing a flood must cost little.
                    why = admission.device(route.city, route.subject, now)
                    if why:
                        raise Reject("unknown_device", why)
                decoded = decoders[kind](route, msg, cfg)
                if admission is not None and kind == "shift":
                    shift = decoded[0]
                    assert isinstance(shift, ShiftEvent)
                    why = admission.shift(shift, now)
                    if why:
                        raise Reject("roster_mismatch", why)
            except Reject as exc:
                city = self.router.city_of(msg.topic)
                decoded = [
                    Rejected(
                        kind, exc.reason, exc.detail, msg.topic, msg.received_at, city, ref=msg.mid
                    )
                ]
                if (
                    exc.reason == "unknown_device"
                    and admission is not None
                    and not admission.deadletter(now)
                ):
                    # A flood of made-up ids: counted, neither published nor stored.
                    self.metrics.rejected.labels(kind, exc.reason).inc()
                    decoded = []
            except Exception as exc:
                log.exception("decoder %s failed on %s", kind, msg.topic)
                city = self.router.city_of(msg.topic)
                detail = f"{type(exc).__name__} while decoding"
                decoded = [
                    Rejected(
                        kind,
                        "internal_error",
                        detail,
                        msg.topic,
                        msg.received_at,
                        city,
                        ref=msg.mid,
                    )
                ]
            received[kind] = received.get(kind, 0) + 1
            refused = [rec for rec in decoded if type(rec) is Rejected]
            ok = len(decoded) - len(refused)
            if refused:
                rejected.append((refused, msg.payload))
                if len(refused) > 1:
                    # Stored like the dead letter: one point per message and reason, counting
                    # the refused elements, so a bad array cannot multiply its own size.
                    decoded = _by_reason(decoded, refused)
            if ok:
                accepted[kind] = accepted.get(kind, 0) + ok
            records.extend(decoded)
        self._account(out, received, accepted, rejected)
        return out

    def _account(
        self,
        out: Decoded,
        received: dict[str, int],
        accepted: dict[str, int],
        rejected: list[tuple[list[Rejected], bytes]],
    ) -> None:
        m = self.metrics
        for kind, n in received.items():
            m.received.labels(kind).inc(n)
        for kind, n in accepted.items():
            m.accepted.labels(kind).inc(n)
        max_bytes = self.cfg.deadletter_max
        # The metric counts every refused element, so it shows the scale; the dead
        # letters are one per message, so a bad batch cannot multiply its own size.
        counts: dict[tuple[str, str], int] = {}
        for refused, payload in rejected:
            for rec in refused:
                key = (rec.kind, rec.reason)
                counts[key] = counts.get(key, 0) + 1
            first = refused[0]
            if len(refused) == 1 and first.element is None:
                letter = deadletter_payload(first, payload, max_bytes)
            else:
                letter = elements_deadletter_payload(refused, payload, max_bytes)
            out.deadletters.append((self.deadletter_topic(first.topic), letter))
        for (kind, reason), n in counts.items():
            m.rejected.labels(kind, reason).inc(n)
        lags = [r.received_at - r.ts for r in out.records if type(r) is Fix]
        if lags:
            m.lag.observe_many(lags)


def _by_reason(decoded: list[Record], refused: list[Rejected]) -> list[Record]:
    """``decoded`` with one record per reason, its first refused element counting them all."""
    counts: dict[str, int] = {}
    for r in refused:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    out: list[Record] = []
    for rec in decoded:
        if type(rec) is Rejected:
            n = counts.pop(rec.reason, 0)
            if not n:
                continue  # counted by the first of its reason
            rec = rec._replace(total=n)
        out.append(rec)
    return out
