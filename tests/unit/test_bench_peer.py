"""The bench's side of the Quix Streams peer that needs no services: its totals checked against
the oracle's, and the pipeline / peer ratio (the peer itself runs in .venv-peer, under the bench)."""

from __future__ import annotations

from typing import Any

from streams.core.events import Purchase
from streams.settings import Settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimulationConfig, generate
from tests.bench.quix_peer import oracle_differences
from tests.bench.report import add_ratios

SETTINGS = Settings()


def oracle_totals() -> tuple[Any, dict[str, int]]:
    truth = expected(generate(SimulationConfig(seed=5, customers=200, events=2_000)), SETTINGS)
    totals = {"skipped": len(truth.dead_letters), "duplicates": truth.duplicate_count, "events": len(truth.accepted),
              "revenue_cents": sum(a.event.amount_cents for a in truth.accepted if isinstance(a.event, Purchase)),
              "customers": len(truth.profiles)}
    return truth, totals


def test_a_peer_that_counts_as_the_oracle_shows_no_difference() -> None:
    truth, totals = oracle_totals()
    assert totals["skipped"] > 0 and totals["duplicates"] > 0 and totals["revenue_cents"] > 0
    assert oracle_differences(totals, truth) == []


def test_each_total_that_differs_is_named_with_the_oracles_value() -> None:
    truth, totals = oracle_totals()
    peer = {**totals, "events": totals["events"] - 1, "customers": totals["customers"] + 2}
    assert oracle_differences(peer, truth) == [
        f"events {totals['events'] - 1:,} (oracle {totals['events']:,})",
        f"customers {totals['customers'] + 2:,} (oracle {totals['customers']:,})",
    ]


def test_the_ratio_to_the_peer_is_ours_over_the_peers_and_only_when_both_ran() -> None:
    figures = {"pipeline_events_s": 6_000.0, "peer_events_s": 8_000.0}
    add_ratios(figures)
    assert figures["pipeline_to_peer"] == 0.75
    without_peer = {"pipeline_events_s": 6_000.0}
    add_ratios(without_peer)
    assert "pipeline_to_peer" not in without_peer
