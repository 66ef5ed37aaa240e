"""The case rule's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from citywatch.metrics import MetricSet


class CaseMetrics(MetricSet):
    """Case events by outcome, open cases, lights, and how late timers fire."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events = self.counter(
            "citywatch_case_events",
            "Case events by outcome: applied, duplicate, refused (impossible transition)",
            ["outcome"],
        )
        self.open = self.gauge("citywatch_cases_open", "Open cases being supervised")
        self.lights = self.gauge(
            "citywatch_case_steps_lit",
            "Running steps of open cases showing a yellow or red light",
            ["light"],
        )
        self.lateness = self.histogram(
            "citywatch_case_timer_lateness_seconds",
            "How long after its instant a yellow or red light was raised",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
        )
        self.restored = self.gauge(
            "citywatch_cases_restored", "Open cases loaded from the store at start-up"
        )
        self.restore_seconds = self.gauge(
            "citywatch_cases_restore_seconds", "Time to load open cases at start-up"
        )
