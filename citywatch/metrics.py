"""Metric helpers; every component takes the registry it registers in as an argument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    """A label-less histogram that takes a whole batch of observations at once.

    ``prometheus_client.Histogram.observe`` costs a lock per call; at tens of
    thousands of fixes a second that shows up, so batches are binned with numpy.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(sorted(buckets), dtype=float)
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        self._sum = 0.0
        registry.register(self)

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        arr = np.asarray(values, dtype=float)
        if arr.size == 0:
            return
        idx = np.searchsorted(self._bounds, arr, side="left")
        self._counts += np.bincount(idx, minlength=len(self._counts))
        self._sum += float(arr.sum())

    def collect(self) -> Iterable[Metric]:
        cumulative = np.cumsum(self._counts)
        buckets = [(repr(float(b)), int(c)) for b, c in zip(self._bounds, cumulative, strict=False)]
        buckets.append(("+Inf", int(cumulative[-1])))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self._sum
        )

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]


class MetricSet:
    """Base of a component's metrics: every metric it makes registers in ``registry``.

    Each component names its metrics in its own ``__init__`` with :meth:`counter`,
    :meth:`gauge` and :meth:`histogram`; the registry is passed in, never global.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter ``name`` registered in this set's registry."""
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge ``name`` registered in this set's registry."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> Histogram:
        """A histogram ``name`` with ``buckets`` registered in this set's registry."""
        return Histogram(name, documentation, labels, registry=self.registry, buckets=buckets)
