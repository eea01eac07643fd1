"""The soak's samples and its summary, as pure arithmetic over what was sampled.

A soak asks whether the worker's memory stays flat once its working set is warm. The working
set is warm when the worker holds (nearly) every customer the run will touch: from then on,
growth of the resident set is what the state keeps beyond its customers (shares, buckets,
tickets, recent ids) or what the process fails to give back. So the summary reports the RSS at
10 %, 50 % and 100 % of the events, where the working set became warm, and the growth after
that point, in MB and as a least-squares slope in MB per million events.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WARM_SHARE = 0.95  # of the customers held at the end: the working set counts as warm from there


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading, ``at_s`` seconds after publishing began."""

    at_s: float
    published: int
    landed: int  # rows in ``events`` (a replayed event counts twice until ClickHouse merges it)
    lag: int | None  # records the worker's group has not committed on the input topics and the referral index
    rss_mb: float  # the worker's VmRSS
    peak_rss_mb: float  # the worker's VmHWM
    cpu_s: float  # the worker's CPU time so far (user + system, all threads)
    customers_held: float | None  # the worker's ``streams_profiles`` gauge (counted every 15 s)
    customers_published: int  # distinct customers among the events published so far
    shares_published: int  # shares stay in the share index: a cause of growth to tell apart
    fresh_events: int  # events first visible in ClickHouse since the previous sample
    fresh_p50_ms: float | None  # their publish -> visible latency
    fresh_p99_ms: float | None
    bench_rss_mb: float  # this bench process's own VmRSS: bounded, whatever the run's length
    bench_cpu_s: float  # this bench process's CPU time so far: making and publishing events shares the cores


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of values counted in ``histogram`` (None when empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(round(q * total, 6)))  # rounded first: 0.29 * 100 is 28.999999999999996
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


def at_fraction(samples: Sequence[Sample], total: int, fraction: float) -> Sample:
    """The first sample at which ``fraction`` of ``total`` events had landed (else the last)."""
    return next((s for s in samples if s.landed >= fraction * total), samples[-1])


def warm_sample(samples: Sequence[Sample]) -> Sample:
    """The first sample holding ``WARM_SHARE`` of the customers held at the end (the worker's
    gauge where it reported, else the customers published, which lead it by the lag)."""
    def held(sample: Sample) -> float:
        return sample.customers_published if sample.customers_held is None else sample.customers_held

    final = held(samples[-1])
    return next((s for s in samples if held(s) >= WARM_SHARE * final), samples[-1])


def growth_after(samples: Sequence[Sample], start: Sample) -> dict[str, float]:
    """RSS growth from ``start`` to the end: MB, and MB per million events landed (least squares
    over the samples from ``start`` on, so one noisy reading does not make the figure)."""
    tail = [s for s in samples if s.at_s >= start.at_s]
    growth = {"rss_growth_mb": tail[-1].rss_mb - start.rss_mb, "events_after_warm": tail[-1].landed - start.landed}
    if len({s.landed for s in tail}) > 1:
        slope = statistics.linear_regression([s.landed for s in tail], [s.rss_mb for s in tail]).slope
        growth["rss_mb_per_million_events"] = slope * 1_000_000
    return growth


def summarize(samples: Sequence[Sample], latencies: Mapping[int, int], published: int,
              publish_s: float | None, landed_s: float | None) -> dict[str, Any]:
    """The run's figures (see the module docstring); ``landed_s``: when the last event was seen
    (None, with ``publish_s``, for a run stopped early: no rates then)."""
    last, warm = samples[-1], warm_sample(samples)
    summary: dict[str, Any] = {
        "events": published,
        "publish_events_s": published / publish_s if publish_s else None,
        "events_s": published / landed_s if landed_s else None,
        "cpu_us_per_event": last.cpu_s / published * 1e6 if published else None,
        "cores_used": last.cpu_s / last.at_s if last.at_s else None,
        **{f"rss_mb_at_{pct}pct": at_fraction(samples, published, pct / 100).rss_mb for pct in (10, 50, 100)},
        "peak_rss_mb": last.peak_rss_mb,
        "warm_at_events": warm.landed,
        "warm_at_s": warm.at_s,
        "rss_mb_when_warm": warm.rss_mb,
        **growth_after(samples, warm),
        "lag_max": max((s.lag for s in samples if s.lag is not None), default=None),
        "freshness_p50_ms": quantile(latencies, 0.5),
        "freshness_p99_ms": quantile(latencies, 0.99),
        "freshness_max_ms": max(latencies, default=None),
        "bench_rss_mb_max": max(s.bench_rss_mb for s in samples),
        "bench_cores_used": last.bench_cpu_s / last.at_s if last.at_s else None,
    }
    return summary
