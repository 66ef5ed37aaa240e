"""The case rule's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CaseMetrics:
    """Case events by outcome, open cases, lights, and how late timers fire."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "citywatch_case_events",
            "Case events by outcome: applied, duplicate, refused (impossible transition)",
            ["outcome"],
            registry=registry,
        )
        self.open = Gauge("citywatch_cases_open", "Open cases being supervised", registry=registry)
        self.lights = Gauge(
            "citywatch_case_steps_lit",
            "Running steps of open cases showing a yellow or red light",
            ["light"],
            registry=registry,
        )
        self.lateness = Histogram(
            "citywatch_case_timer_lateness_seconds",
            "How long after its instant a yellow or red light was raised",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=registry,
        )
        self.restored = Gauge(
            "citywatch_cases_restored",
            "Open cases loaded from the store at start-up",
            registry=registry,
        )
        self.restore_seconds = Gauge(
            "citywatch_cases_restore_seconds",
            "Time to load open cases at start-up",
            registry=registry,
        )
