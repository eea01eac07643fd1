"""Whether ClickHouse holds exactly what a chunked run published, without an oracle: the run's
events are all clean (every one must land, none twice), so the distinct events per type, the
purchases' revenue and the customers' profiles (how many, their events and revenue summed)
must equal the tally kept while the chunks were made."""

from __future__ import annotations

import time

from clickhouse_driver import Client

from tests.bench.soak_workload import Tally


def expected_totals(tally: Tally) -> dict[str, int]:
    return {
        "events": tally.events,
        **{f"events_{kind}": count for kind, count in sorted(tally.by_type.items())},
        "revenue_cents": tally.revenue_cents,
        "profiles": len(tally.customers),
        "profile_events": tally.events,
        "profile_revenue_cents": tally.revenue_cents,
    }


def landed_totals(client: Client) -> dict[str, int]:
    """The same totals read back (FINAL: one row per event and per profile's last version)."""
    totals: dict[str, int] = {"events": 0, "revenue_cents": 0}
    for kind, count, revenue in client.execute(
            "SELECT event_type, count(), sum(ifNull(amount_cents, 0)) FROM events FINAL GROUP BY event_type"):
        totals[f"events_{kind}"] = int(count)
        totals["events"] += int(count)
        totals["revenue_cents"] += int(revenue)
    profiles, events, revenue = client.execute(
        "SELECT count(), sum(events), sum(revenue_cents) FROM customer_profiles FINAL")[0]
    totals.update(profiles=int(profiles), profile_events=int(events), profile_revenue_cents=int(revenue))
    return totals


def mismatches(expected: dict[str, int], landed: dict[str, int]) -> list[str]:
    return [f"{key}: expected {value:,}, landed {landed.get(key, 0):,}"
            for key, value in expected.items() if landed.get(key, 0) != value]


def check_landed(client: Client, tally: Tally, settle_s: float = 60.0, poll_s: float = 5.0) -> list[str]:
    """Compare until equal or ``settle_s`` passed (profiles' last versions may follow the events'
    rows by a flush); what still differs then, or nothing."""
    expected = expected_totals(tally)
    deadline = time.monotonic() + settle_s
    while True:
        problems = mismatches(expected, landed_totals(client))
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(poll_s)
