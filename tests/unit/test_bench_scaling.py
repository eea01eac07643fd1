"""The scale bench's arithmetic: E(N), events per core, per-partition drain times and shares."""

from __future__ import annotations

import pytest

from tests.bench.scaling import (
    LagSample,
    PartitionLoad,
    drained_at,
    efficiency,
    events_per_core,
    hot_versus_rest,
    partition_loads,
)


def test_efficiency_is_the_rate_over_n_times_one_worker() -> None:
    assert efficiency(10_000, 20_000, 2) == 1.0
    assert efficiency(10_000, 13_000, 2) == pytest.approx(0.65)
    assert efficiency(10_000, 9_000, 2) == pytest.approx(0.45)  # slower with two: below 0.5


@pytest.mark.parametrize(("rate_1", "workers"), [(0.0, 2), (10.0, 0)])
def test_efficiency_refuses_what_has_no_meaning(rate_1: float, workers: int) -> None:
    with pytest.raises(ValueError, match="efficiency needs"):
        efficiency(rate_1, 5.0, workers)


def test_events_per_core_does_not_depend_on_the_wall_clock() -> None:
    # 100k events in 10 s on 1.5 busy cores (15 CPU s): 10k events/s, 6,667 per core.
    assert events_per_core(100_000, 15.0) == pytest.approx(100_000 / 10 / 1.5)
    with pytest.raises(ValueError, match="CPU seconds"):
        events_per_core(1, 0.0)


SAMPLES = [
    LagSample(0.5, {0: 100, 1: 50, 2: 0}),
    LagSample(1.0, {0: 80, 1: 0, 2: 0}),
    LagSample(1.5, {0: 40, 1: 0, 2: 3}),  # partition 2 gets work again: not drained at 0.5
    LagSample(2.0, {0: 0, 1: 0, 2: 0}),
]


def test_drained_at_is_when_lag_reached_zero_for_good() -> None:
    assert drained_at(SAMPLES, 0) == 2.0
    assert drained_at(SAMPLES, 1) == 1.0
    assert drained_at(SAMPLES, 2) == 2.0
    assert drained_at(SAMPLES[:3], 2) is None
    assert drained_at(SAMPLES, 3) == 0.5  # a partition never seen has nothing to do


def test_partition_loads_and_the_hot_partition_against_the_rest() -> None:
    loads = partition_loads({1: 60, 0: 300, 2: 40}, SAMPLES)
    assert loads == [PartitionLoad(0, 300, 0.75, 100, 2.0), PartitionLoad(1, 60, 0.15, 50, 1.0),
                     PartitionLoad(2, 40, 0.1, 3, 2.0)]
    assert loads[0].records_per_s == 150.0
    assert hot_versus_rest(loads) == {"hot_partition": 0, "hot_share": 0.75, "hot_drained_s": 2.0,
                                      "others_drained_s": 2.0, "others_share_max": 0.15}
    assert hot_versus_rest(partition_loads({0: 1, 1: 1}, SAMPLES[:3])) == {}  # partition 0 never drained
