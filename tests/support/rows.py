"""Full rows for the pipeline's tables, for tests that write them directly (through the sink)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from streams.clickhouse.client import connect
from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES
from streams.settings import Settings

DAY = 86_400_000


def row(table: str, **values: Any) -> dict[str, Any]:
    """A full row of ``table``: zero/empty defaults for every column, then ``values``."""
    out: dict[str, Any] = {}
    for column in TABLES[table].columns:
        if column.type.startswith("Nullable"):
            out[column.name] = None
        elif column.type.startswith("Array"):
            out[column.name] = []
        elif column.type == "String":
            out[column.name] = ""
        else:
            out[column.name] = 0
    unknown = values.keys() - out.keys()
    assert not unknown, unknown
    out.update(values)
    return out


def traffic(seed: int = 7, customers: int = 300) -> list[tuple[str, dict[str, Any]]]:
    """Rows for every table, with several versions per key (as a worker would write them).

    Every fifth customer has an anonymous id identified as it, with rows of its own: what the
    views must leave out (the customer's rows would hold it; here they need not)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    today = now // DAY * DAY
    rows: list[tuple[str, dict[str, Any]]] = []
    for i in range(customers):
        customer = f"c{i:04d}"
        purchases = rng.randint(0, 12)
        revenue = purchases * rng.randint(500, 20_000)
        for version in range(1, rng.randint(2, 4)):
            rows.append(("customer_profiles", row(
                "customer_profiles", customer_id=customer, version=version, first_seen_at_ms=now - 40 * DAY,
                last_seen_at_ms=now - version, events=version * 10, clicks=version * 5, purchases=purchases,
                # Half a day off whole days from now: customer_rfm counts days up to now(), and
                # must not tick over between the two reads this test compares.
                revenue_cents=revenue,
                last_purchase_at_ms=now - rng.randint(0, 120) * DAY - DAY // 2 if purchases else None,
                open_tickets=rng.randint(0, 2), tickets_resolved=rng.randint(0, 3),
                first_reply_ms_total=rng.randint(0, 10**7), first_reply_count=rng.randint(1, 3),
                satisfaction_sum=version * 4, satisfaction_count=version, segment="active")))
        for day_back in range(rng.randint(1, 5)):
            clicks = rng.randint(0, 4)
            bought = rng.randint(0, 1)
            for version in (1, 2):
                rows.append(("customer_daily", row(
                    "customer_daily", customer_id=customer, day=today - day_back * DAY,
                    events=clicks + bought + version, clicks=clicks, purchases=bought,
                    revenue_cents=bought * 1000, version=version)))
                rows.append(("customer_hourly", row(
                    "customer_hourly", customer_id=customer, hour_start=today - day_back * DAY + 3_600_000,
                    events=clicks + version, clicks=clicks, version=version)))
        if i % 5 == 0:
            anonymous = f"a{i:04d}"
            rows += [
                ("customer_profiles", row("customer_profiles", customer_id=anonymous, version=1, events=3, clicks=3,
                                          open_tickets=1, first_reply_ms_total=5000, first_reply_count=1)),
                ("customer_daily", row("customer_daily", customer_id=anonymous, day=today, events=3, clicks=3,
                                       version=1)),
                ("identity_map", row("identity_map", anonymous_id=anonymous, customer_id=customer, version=1)),
            ]
        if i % 3 == 0:
            rows.append(("referral_credits", row(
                "referral_credits", credit_id=f"t{i}", sharer_customer_id=f"c{i % 17:04d}",
                referred_customer_id=customer, share_id=f"s{i % 5}", touch_type="purchase" if i % 2 else "click",
                touch_occurred_at_ms=now - DAY, amount_cents=1500 if i % 2 else 0)))
        rows.append(("events", row(
            "events", event_id=f"e{i}", event_type="click", customer_id=customer, occurred_at_ms=now - DAY,
            ingest_ms=now - DAY, channel="web", page="/", source_topic="interactions.clicks",
            source_partition=i % 4, source_offset=i)))
        if i % 10 == 0:
            rows.append(("ingestion_errors", row(
                "ingestion_errors", kind="dead_letter", reason="bad_magic", error_class="DecodeError",
                source_topic="interactions.clicks", source_partition=i % 4, source_offset=10_000 + i,
                ingest_ms=now - DAY, payload="AA==")))
    for partition in range(4):
        for version in (1, 2, 3):
            rows.append(("minute_totals", row(
                "minute_totals", minute_start=today - 60_000, event_type="click", channel="web",
                source_partition=partition, events=version * (partition + 1), version=version)))
    return rows


def write(settings: Settings, rows: list[tuple[str, dict[str, Any]]], flush_every: int) -> None:
    """Through the sink as the writer user, flushing every ``flush_every`` rows (several parts)."""
    sink = ClickHouseSink(settings, lambda: connect(settings))

    async def run() -> None:
        for n, (table, row) in enumerate(rows, 1):
            sink.add(table, row)
            if n % flush_every == 0:
                await sink.flush()
        await sink.flush()

    asyncio.run(run())
    assert sink.buffered_rows == 0 and sink.healthy
    sink.close()
