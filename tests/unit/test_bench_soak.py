"""The soak's pieces that need no services: its workload chunks, the tally check's arithmetic,
the freshness tracker's bounded memory and the summary's figures."""

from __future__ import annotations

import time
from collections import Counter, deque

import pytest

from streams.settings import Settings
from streams.tools.simulate import SimulationConfig, Tag, generate
from tests.bench.freshness import LandingTracker, medians_by_third
from tests.bench.soak_figures import Sample, at_fraction, growth_after, quantile, summarize, warm_sample
from tests.bench.soak_workload import Tally, on_time_records, one_click_each, simulated
from tests.bench.tally_check import expected_totals, mismatches

SETTINGS = Settings()


def sample(at_s: float, landed: int, rss_mb: float, held: float | None = None, published: int = 0) -> Sample:
    return Sample(at_s=at_s, published=published or landed, landed=landed, lag=0, rss_mb=rss_mb,
                  peak_rss_mb=rss_mb, cpu_s=at_s / 2, customers_held=held, customers_published=int(held or 0),
                  shares_published=0, fresh_events=0, fresh_p50_ms=None, fresh_p99_ms=None, bench_rss_mb=100.0,
                  bench_cpu_s=at_s / 4)


def test_chunks_are_on_time_clean_and_exactly_as_many_as_asked() -> None:
    window_ms = 15 * 60_000
    before_ms = int(time.time() * 1000)
    records = on_time_records(SETTINGS, seed=3, customers=1_000, events=5_000, window_ms=window_ms)
    assert len(records) == 5_000
    assert all(r.event is not None and r.raw_value is None for r in records)
    assert not any(Tag.OLD_SHARE in r.tags or Tag.UNKNOWN_SHARE in r.tags for r in records)
    occurred = [r.event.occurred_at_ms for r in records if r.event is not None]
    # Published from now on, each is at most a window old: far within the allowed lateness.
    assert min(occurred) >= before_ms - window_ms
    assert window_ms < SETTINGS.allowed_lateness_ms
    assert len({r.event.event_id for r in records if r.event is not None}) == 5_000


def test_chunks_differ_by_seed_so_event_ids_never_repeat() -> None:
    make = simulated(SETTINGS, seed=7, customers=1_000)
    first, second = make(0, 0, 2_000), make(1, 2_000, 2_000)
    ids = [r.event.event_id for r in first + second if r.event is not None]
    assert len(set(ids)) == 4_000


def test_one_click_each_names_the_customers_as_the_simulator_does() -> None:
    customers = 1_000
    simulated_ids = {r.event.actor_id for r in generate(SimulationConfig(customers=customers, events=20_000))
                     if r.event is not None}
    clicks = one_click_each(customers)(0, 0, customers) + one_click_each(customers)(1, customers, 5)
    warm_ids = [r.event.actor_id for r in clicks if r.event is not None]
    assert len(warm_ids) == len(set(warm_ids)) == customers  # nothing past the last customer
    assert simulated_ids <= set(warm_ids)


def test_tallies_merge_and_the_check_names_what_differs() -> None:
    records = on_time_records(SETTINGS, seed=5, customers=500, events=1_000, window_ms=600_000)
    whole, halves = Tally.of(records), Tally.of(records[:400])
    halves.merge(Tally.of(records[400:]))
    assert expected_totals(halves) == expected_totals(whole)
    expected = expected_totals(whole)
    assert expected["events"] == expected["profile_events"] == 1_000
    assert expected["profiles"] == len({r.key for r in records})
    assert not mismatches(expected, dict(expected))
    assert mismatches(expected, {**expected, "events_click": expected["events_click"] - 1}) == [
        f"events_click: expected {expected['events_click']:,}, landed {expected['events_click'] - 1:,}"]


def test_the_landing_tracker_forgets_what_no_poll_asks_for_again() -> None:
    tracker = LandingTracker(since_ms=1_000)
    tracker.absorb(deque([1_000, 1_000, 1_001, 1_005]))
    tracker.record(1_100, [(1_000, 2), (1_001, 1)])
    assert tracker.latencies_ms == [100, 100, 99]
    assert tracker.low_watermark_ms == 1_005
    assert set(tracker._published) == {1_005}
    # The newest millisecond is kept once seen: another send in it must wait for its own row.
    tracker.record(1_200, [(1_005, 1)])
    tracker.absorb(deque([1_005]))
    tracker.record(1_300, [(1_005, 1)])  # still the first row only
    assert tracker.outstanding == Counter({1_005: 1})
    tracker.record(1_400, [(1_005, 2)])
    assert tracker.latencies_ms[-2:] == [195, 395] and not tracker.outstanding


def test_the_landing_tracker_keeps_each_millisecond_seen_with_its_latency() -> None:
    tracker = LandingTracker(since_ms=1_000)
    tracker.absorb(deque([1_000, 1_000, 1_001]))
    tracker.record(1_100, [(1_000, 2)])
    tracker.record(1_250, [(1_001, 1)])
    assert tracker.landed == [(1_000, 100, 2), (1_001, 249, 1)]


def test_a_worker_falling_behind_shows_a_larger_median_in_the_last_third_than_in_the_first() -> None:
    steady = [(ms, 500, 10) for ms in range(0, 30_000, 100)]
    assert medians_by_third(steady) == (500, 500)
    # Latency grows by 100 ms per second of sends: the first third's events waited 0.5-1.5 s,
    # the last third's 2.5-3.5 s.
    behind = [(ms, 500 + ms // 10, 10) for ms in range(0, 30_000, 100)]
    first, last = medians_by_third(behind)
    assert 900 <= first <= 1_100 and 2_900 <= last <= 3_100
    # Events are weighted by how many landed in each millisecond, not by millisecond.
    assert medians_by_third([(0, 100, 1), (1, 900, 5), (2, 100, 1), (3, 100, 1)])[0] == 900
    assert medians_by_third([]) == (0, 0)


def test_quantiles_are_nearest_rank_over_a_histogram() -> None:
    histogram = Counter({10: 50, 20: 49, 900: 1})
    assert quantile(histogram, 0.5) == 10
    assert quantile(histogram, 0.99) == 20
    assert quantile(histogram, 1.0) == 900
    assert quantile(Counter(), 0.5) is None


def test_memory_growth_is_measured_from_where_the_working_set_is_warm() -> None:
    samples = [sample(5 * i, 100_000 * i, 200 + 10 * min(i, 4) + 0.5 * i, held=min(i, 4) * 25_000)
               for i in range(1, 11)]
    warm = warm_sample(samples)
    assert warm.landed == 400_000  # the first sample holding 95 % of the customers held at the end
    growth = growth_after(samples, warm)
    assert growth["rss_growth_mb"] == pytest.approx(3.0)
    assert growth["rss_mb_per_million_events"] == pytest.approx(5.0)
    assert at_fraction(samples, 1_000_000, 0.5).landed == 500_000
    summary = summarize(samples, Counter({600: 98, 1_500: 2}), published=1_000_000, publish_s=50.0, landed_s=51.0)
    assert summary["rss_mb_at_10pct"] == pytest.approx(210.5)
    assert summary["freshness_p50_ms"] == 600 and summary["freshness_p99_ms"] == 1_500
    assert summary["events_s"] == pytest.approx(1_000_000 / 51)
