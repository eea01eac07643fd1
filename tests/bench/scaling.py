"""The scaling and skew figures, as pure arithmetic over what the bench measured.

Scaling efficiency E(N) = T(N) / (N * T(1)): 1.0 when N workers go N times as fast as one.
Events per core used = events / total worker CPU seconds, which is the events/s divided by the
cores the workers kept busy (CPU seconds / wall seconds): a figure that does not depend on how
many cores the machine had free. Per partition, the lag samples say when each partition's
backlog was consumed and committed (the worker commits only after the rows are written), so a
hot partition that delays the others shows as their drain times growing with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def efficiency(rate_1: float, rate_n: float, workers: int) -> float:
    """E(N) = T(N) / (N * T(1))."""
    if workers < 1 or rate_1 <= 0:
        raise ValueError(f"efficiency needs workers >= 1 and T(1) > 0, got {workers} and {rate_1}")
    return rate_n / (workers * rate_1)


def events_per_core(events: int, cpu_seconds: float) -> float:
    """Events per second of one busy core: events / (CPU seconds / wall seconds) / wall seconds."""
    if cpu_seconds <= 0:
        raise ValueError(f"CPU seconds must be > 0, got {cpu_seconds}")
    return events / cpu_seconds


@dataclass(frozen=True, slots=True)
class LagSample:
    """Records behind per partition (summed over the topics watched) at ``at_s`` after launch."""

    at_s: float
    lag: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class PartitionLoad:
    """One partition's share of the records, its worst backlog and when it was caught up."""

    partition: int
    records: int
    share: float
    peak_lag: int
    drained_s: float | None  # None: never seen at zero lag for good

    @property
    def records_per_s(self) -> float | None:
        """The partition's records over the seconds it took to drain them (launch included)."""
        return None if not self.drained_s else self.records / self.drained_s


def drained_at(samples: Sequence[LagSample], partition: int) -> float | None:
    """The first sample time from which ``partition``'s lag stayed zero to the last sample."""
    drained: float | None = None
    for sample in samples:
        if sample.lag.get(partition, 0) > 0:
            drained = None
        elif drained is None:
            drained = sample.at_s
    return drained


def partition_loads(records: Mapping[int, int], samples: Sequence[LagSample]) -> list[PartitionLoad]:
    """Per partition, in partition order: records, share of all records, peak lag, drain time."""
    total = sum(records.values())
    return [
        PartitionLoad(
            partition=partition,
            records=count,
            share=count / total if total else 0.0,
            peak_lag=max((s.lag.get(partition, 0) for s in samples), default=0),
            drained_s=drained_at(samples, partition),
        )
        for partition, count in sorted(records.items())
    ]


def hot_versus_rest(loads: Sequence[PartitionLoad]) -> dict[str, float]:
    """The partition with the most records against the others: shares and drain times.

    ``others_drained_s`` is the latest drain among the other partitions; when it is well before
    ``hot_drained_s``, the hot partition's backlog did not hold the others back.
    """
    if len(loads) < 2 or any(load.drained_s is None for load in loads):
        return {}
    hot = max(loads, key=lambda load: load.records)
    others = [load for load in loads if load is not hot]
    return {
        "hot_partition": hot.partition,
        "hot_share": hot.share,
        "hot_drained_s": float(hot.drained_s or 0.0),
        "others_drained_s": max(float(load.drained_s or 0.0) for load in others),
        "others_share_max": max(load.share for load in others),
    }
