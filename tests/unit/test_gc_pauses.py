"""The garbage-collector pause histogram: each collection is timed into its generation's series."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from streams.runtime.metrics import GcPauses


def sample(registry: CollectorRegistry, name: str, generation: str, le: str | None = None) -> float:
    labels = {"generation": generation} | ({"le": le} if le else {})
    value = registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def test_each_collection_is_timed_into_its_generation() -> None:
    pauses, registry = GcPauses(), CollectorRegistry()
    registry.register(pauses)
    gc.callbacks.append(pauses.on_gc)
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses.on_gc)
    assert sample(registry, "streams_gc_pause_seconds_count", "2") == 2
    assert sample(registry, "streams_gc_pause_seconds_count", "0") >= 1  # and any the test's allocations ran
    assert sample(registry, "streams_gc_pause_seconds_bucket", "2", "+Inf") == 2
    assert sample(registry, "streams_gc_pause_seconds_sum", "2") > 0


def test_a_pause_lands_in_the_first_bucket_that_holds_it() -> None:
    clock = iter([10.0, 10.03])
    pauses, registry = GcPauses(clock=lambda: next(clock)), CollectorRegistry()
    registry.register(pauses)
    pauses.on_gc("start", {"generation": 1})
    pauses.on_gc("stop", {"generation": 1})
    assert sample(registry, "streams_gc_pause_seconds_bucket", "1", "0.025") == 0
    assert sample(registry, "streams_gc_pause_seconds_bucket", "1", "0.05") == 1
    assert sample(registry, "streams_gc_pause_seconds_count", "0") == 0
    assert b'streams_gc_pause_seconds_count{generation="1"} 1.0' in generate_latest(registry)
