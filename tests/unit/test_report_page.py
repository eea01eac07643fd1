"""The report's figures and page from the oracle's answer to a simulated run (no database)."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import Counter, defaultdict
from typing import Any

import pytest

from streams.settings import Settings
from streams.tools.oracle import Expected, expected
from streams.tools.report_page import PRIVACY_NOTE, ReportData, render, sections
from streams.tools.simulate import SimulationConfig, generate

SETTINGS = Settings(clickhouse_password="writer-secret", clickhouse_admin_password="admin-secret")  # type: ignore[arg-type]
NOW = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC)


def _daily(truth: Expected) -> list[dict[str, Any]]:
    """daily_engagement's rows, as the view sums the oracle's daily buckets."""
    by_day: dict[int, Counter[str]] = defaultdict(Counter)
    customers: dict[int, set[str]] = defaultdict(set)
    for (customer, day_ms), bucket in truth.daily.items():
        by_day[day_ms].update(bucket)
        customers[day_ms].add(customer)
    return [{"day": dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC).date(), "active_customers": len(customers[day_ms]),
             **by_day[day_ms]} for day_ms in sorted(by_day)]


def _referrals(truth: Expected) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """referral_leaderboard's top rows and the sharer -> referred pairs, from the oracle's credits."""
    revenue: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for credit in truth.credits.values():
        revenue[credit["sharer_customer_id"]] += credit["amount_cents"]
        pairs[(credit["sharer_customer_id"], credit["referred_customer_id"])] += 1
    top = [sharer for sharer, _ in revenue.most_common(10)]
    leaderboard = [{"sharer_customer_id": s, "referred_clicks": 1, "referred_purchases": 1,
                    "referred_revenue_cents": revenue[s], "referred_customers": 1} for s in top]
    referrals = [{"sharer_customer_id": s, "referred_customer_id": r, "credits": n, "revenue_cents": 0}
                 for (s, r), n in pairs.items() if s in top]
    return leaderboard, referrals


@pytest.fixture(scope="module")
def data() -> ReportData:
    truth = expected(generate(SimulationConfig(seed=5, customers=60, events=1_500, start_ms=0)), SETTINGS)
    leaderboard, referrals = _referrals(truth)
    daily = _daily(truth)
    funnel = [{"day": row["day"], "clicked_customers": 40, "purchased_customers": 12,
               "clicked_and_purchased_customers": 10} for row in daily]
    support = {"open_tickets": 7, "customers_with_open_tickets": 6, "tickets_resolved": 20, "tickets_with_reply": 25,
               "avg_first_reply_seconds": 3_725, "tickets_resolved_timed": 20, "avg_resolution_seconds": 86_400,
               "satisfaction_responses": 18, "avg_satisfaction": 3.5}
    return ReportData("interactions", "EUR", NOW, daily=daily, leaderboard=leaderboard, referrals=referrals,
                      funnel=funnel, support=support)


def test_daily_activity_stacks_every_event_type_per_day(data: ReportData) -> None:
    daily = sections(data)[0]
    assert daily.figure is not None
    bars = {trace.name: list(trace.y) for trace in daily.figure.data if trace.type == "bar"}
    assert set(bars) == {"clicks", "shares", "purchases", "support"}
    per_day = [sum(day) for day in zip(*bars.values(), strict=True)]
    assert per_day == [row["events"] for row in data.daily]
    assert f"{sum(per_day):,} events" in daily.explanation


def test_the_referral_network_links_each_pair_once_from_sharer_to_referred(data: ReportData) -> None:
    network = next(s for s in sections(data) if s.name == "referrals")
    assert network.figure is not None
    sankey = network.figure.data[0]
    labels = list(sankey.node.label)
    links = {(labels[s], labels[t]): v for s, t, v in zip(sankey.link.source, sankey.link.target, sankey.link.value,
                                                          strict=True)}
    assert links == {(r["sharer_customer_id"], r["referred_customer_id"]): r["credits"] for r in data.referrals}
    sharers = {r["sharer_customer_id"] for r in data.referrals}
    assert all(labels[s] in sharers for s in sankey.link.source)
    assert max(sankey.link.source) < min(sankey.link.target)  # left column, then right: no loops


def test_leaderboard_best_on_top_with_money_in_currency(data: ReportData) -> None:
    board = next(s for s in sections(data) if s.name == "leaderboard")
    assert board.figure is not None
    bar = board.figure.data[0]
    assert list(bar.y)[-1] == data.leaderboard[0]["sharer_customer_id"]  # horizontal bars draw bottom-up
    assert list(bar.text)[-1].startswith("EUR ")


def test_funnel_and_support_read_for_people(data: ReportData) -> None:
    by_name = {s.name: s for s in sections(data)}
    assert "25.0% converted" in by_name["funnel"].explanation
    assert "first reply 1 h 2 min" in by_name["support"].explanation
    assert "average resolution 1 d" in by_name["support"].explanation


def test_sections_without_data_say_so_instead_of_drawing() -> None:
    empty = ReportData("interactions", "EUR", NOW)
    assert all(section.figure is None for section in sections(empty))
    page = render(empty)
    assert page.count('class="empty"') == 5
    assert "chart-" not in page


def test_the_page_is_self_contained_and_private(data: ReportData) -> None:
    page = render(data)
    assert re.search(r"<script[^>]+src=", page) is None, "no external script: the page opens offline"
    assert re.search(r"<link[^>]+href=", page) is None
    assert page.count('class="plotly-graph-div"') == 5
    for name in ("daily", "leaderboard", "referrals", "funnel", "support"):
        assert f'id="chart-{name}"' in page
    assert html.escape(PRIVACY_NOTE) in page
    assert "writer-secret" not in page and "admin-secret" not in page
    # The figures' data travel as JSON inside the page.
    assert json.dumps(data.leaderboard[0]["sharer_customer_id"]) in page
