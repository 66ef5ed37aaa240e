"""Turns a batch of received messages into records and dead letters."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from citywatch.deadletter import deadletter_payload
from citywatch.models import Fix, Record, Rejected, ShiftEvent
from collectors.admission import Admission
from collectors.config import IngestConfig
from collectors.message import Decoder, Incoming
from collectors.metrics import CollectorMetrics
from collectors.registry import COLLECTORS
from collectors.reject import Reject
from collectors.topics import Router

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
        return f"{self.router.root}/{self.router.city_of(topic) or 'unknown'}/deadletter"

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
        rejected: list[tuple[Rejected, bytes]] = []
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
            ok = 0
            for rec in decoded:
                if type(rec) is Rejected:
                    rejected.append((rec, msg.payload))
                else:
                    ok += 1
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
        rejected: list[tuple[Rejected, bytes]],
    ) -> None:
        m = self.metrics
        for kind, n in received.items():
            m.received.labels(kind).inc(n)
        for kind, n in accepted.items():
            m.accepted.labels(kind).inc(n)
        for rec, payload in rejected:
            m.rejected.labels(rec.kind, rec.reason).inc()
            out.deadletters.append(
                (
                    self.deadletter_topic(rec.topic),
                    deadletter_payload(rec, payload, self.cfg.deadletter_max),
                )
            )
        lags = [r.received_at - r.ts for r in out.records if type(r) is Fix]
        if lags:
            m.lag.observe_many(lags)
