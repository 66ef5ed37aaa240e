"""Turns a batch of received messages into records and dead letters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from citywatch.models import Fix, Record, Rejected
from collectors.config import IngestConfig
from collectors.deadletter import deadletter_payload
from collectors.message import Decoder, Incoming
from collectors.metrics import CollectorMetrics
from collectors.registry import COLLECTORS
from collectors.reject import Reject
from collectors.topics import Router


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
    ) -> None:
        self.cfg = cfg
        self.router = router
        self.metrics = metrics
        self.decoders = decoders

    def deadletter_topic(self, topic: str) -> str:
        return f"{self.router.root}/{self.router.city_of(topic) or 'unknown'}/deadletter"

    def decode(self, batch: Sequence[Incoming]) -> Decoded:
        out = Decoded()
        records = out.records
        received: Counter[str] = Counter()
        accepted: Counter[str] = Counter()
        lags: list[float] = []
        cfg = self.cfg
        route_of = self.router.route
        for msg in batch:
            kind = "unknown"
            try:
                route = route_of(msg.topic)
                if route is None:
                    continue  # the service's own output topics
                kind = route.kind
                if len(msg.payload) > cfg.max_payload:
                    raise Reject(
                        "payload_too_large",
                        f"{len(msg.payload)} bytes, at most {cfg.max_payload}",
                    )
                decoded = self.decoders[kind](route, msg, cfg)
            except Reject as exc:
                decoded = [
                    Rejected(
                        kind,
                        exc.reason,
                        exc.detail,
                        msg.topic,
                        msg.received_at,
                        self.router.city_of(msg.topic),
                    )
                ]
            received[kind] += 1
            for rec in decoded:
                if type(rec) is Fix:
                    lags.append(rec.received_at - rec.ts)
                elif type(rec) is Rejected:
                    self.metrics.rejected.labels(rec.kind, rec.reason).inc()
                    out.deadletters.append(
                        (
                            self.deadletter_topic(msg.topic),
                            deadletter_payload(rec, msg.payload, cfg.deadletter_max),
                        )
                    )
                    continue
                accepted[kind] += 1
            records.extend(decoded)
        for kind, n in received.items():
            self.metrics.received.labels(kind).inc(n)
        for kind, n in accepted.items():
            self.metrics.accepted.labels(kind).inc(n)
        self.metrics.lag.observe_many(lags)
        return out
