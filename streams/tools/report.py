"""``streams report``: read what landed in ClickHouse through the analyst views and write the page.

The queries live here; what the page shows is :mod:`streams.tools.report_page`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from streams.clickhouse.client import connect
from streams.clickhouse.errors import describe
from streams.errors import StreamsError
from streams.settings import Settings
from streams.tools.report_page import ReportData, render

#: Sharers on the leaderboard chart, and whose referred customers the network shows.
TOP_SHARERS = 15
#: Most sharer -> referred pairs drawn (the busiest first), so the picture stays readable.
MAX_REFERRAL_PAIRS = 120


def _select(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows, columns = client.execute(sql, params, with_column_types=True)
    names = [name for name, _ in columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


def read_report_data(client: Client, settings: Settings) -> ReportData:
    leaderboard = _select(client, "SELECT sharer_customer_id, referred_clicks, referred_purchases, "
                                  "referred_revenue_cents, referred_customers FROM referral_leaderboard "
                                  "LIMIT %(top)s", {"top": TOP_SHARERS})
    sharers = tuple(row["sharer_customer_id"] for row in leaderboard)
    # No analyst view pairs sharers with referred customers: the table itself, read with FINAL.
    referrals = _select(
        client, "SELECT sharer_customer_id, referred_customer_id, count() AS credits, "
                "sumIf(amount_cents, touch_type = 'purchase') AS revenue_cents "
                "FROM referral_credits FINAL WHERE sharer_customer_id IN %(sharers)s "
                "GROUP BY sharer_customer_id, referred_customer_id "
                "ORDER BY credits DESC, sharer_customer_id, referred_customer_id LIMIT %(pairs)s",
        {"sharers": sharers, "pairs": MAX_REFERRAL_PAIRS}) if sharers else []
    support = _select(client, "SELECT * FROM support_kpis")
    return ReportData(
        database=settings.clickhouse_database, currency=settings.currency,
        generated_at=dt.datetime.now(dt.UTC),
        daily=_select(client, "SELECT * FROM daily_engagement ORDER BY day"),
        leaderboard=leaderboard, referrals=referrals,
        funnel=_select(client, "SELECT * FROM click_to_purchase_funnel ORDER BY day"),
        support=support[0] if support else {})


def write_report(settings: Settings, path: str | Path) -> Path:
    """Query, render, write; returns the absolute path of the page."""
    client = connect(settings)
    try:
        data = read_report_data(client, settings)
    except (ClickHouseError, OSError) as exc:
        raise StreamsError(
            f"cannot read the report from ClickHouse {settings.clickhouse_host}:{settings.clickhouse_port}, database "
            f"{settings.clickhouse_database!r}, as {settings.clickhouse_user!r} ({describe(exc)}): check the "
            "STREAMS_CLICKHOUSE_* settings and that `streams migrate` ran there") from None
    finally:
        client.disconnect()
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(data), encoding="utf-8")
    return target
