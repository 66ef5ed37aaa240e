"""Metric helpers; every component takes the registry it registers in as an argument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
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
