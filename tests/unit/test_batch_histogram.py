"""BatchHistogram: the freshness histogram observed a batch at a time must expose exactly what
prometheus_client's Histogram exposes for the same values (dashboards and alerts read it)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.runtime.metrics import FRESHNESS_BUCKETS, BatchHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize("batches", [
    [],
    [[0.0]],
    [[0.05, 0.1, 0.25], [0.5, 1.0]],  # values equal to a bound fall in that bound's bucket
    [[0.049, 0.051, 3599.9, 3600.0, 3600.1, 1e9]],  # beyond the last bound: +Inf only
    [[0.3] * 1000, [], [12.5, 0.07]],
])
def test_exposes_what_a_histogram_exposes_for_the_same_values(batches: list[list[float]]) -> None:
    expected, actual = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("freshness_seconds", "doc", buckets=FRESHNESS_BUCKETS, registry=expected)
    batched = BatchHistogram("freshness_seconds", "doc", FRESHNESS_BUCKETS)
    actual.register(batched)
    for batch in batches:
        for value in batch:
            histogram.observe(value)
        batched.observe_many(iter(batch))  # any iterable, read once
    assert exposition(actual) == exposition(expected)
