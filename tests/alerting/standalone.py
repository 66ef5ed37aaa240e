"""Alerting by itself, without the service around it: for the alerting tests and bench."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from citywatch.alerting.channels import Channels
from citywatch.alerting.config import AlertingConfig
from citywatch.alerting.metrics import AlertingMetrics
from citywatch.alerting.notifiers.base import Notifier
from citywatch.alerting.service import Alerting
from citywatch.clock import Clock


def standalone(
    cfg: AlertingConfig,
    data: Path,
    push: Notifier | None,
    session: aiohttp.ClientSession | None,
    clock: Clock,
) -> Alerting:
    """Alerting on ``cfg`` with its store in ``data``: pushes through ``push``, webhooks
    through ``session``, metrics in a registry of its own, no history sink."""
    metrics = AlertingMetrics(CollectorRegistry())
    return Alerting(cfg, data / "alerts.sqlite", Channels(cfg, push, session), None, metrics, clock)
