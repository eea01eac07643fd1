"""Reads the pipeline's tables back from ClickHouse as the stages wrote them (times in ms)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clickhouse_driver import Client

#: What each compared result is read from: the tables, except buckets and per-minute totals,
#: read from the views that add backfilled history to them (migration 0011_history).
COMPARED = {"customer_profiles": "customer_profiles FINAL", "customer_hourly": "customer_hourly_all",
            "customer_daily": "customer_daily_all", "minute_totals": "minute_totals_by_type",
            "referral_credits": "referral_credits FINAL"}


def _as_written(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000) if value.tzinfo is None else int(
            value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1000)
    return value


def read_final_rows(client: Client) -> dict[str, list[dict[str, Any]]]:
    """Every compared result's current rows (``FINAL``: one row per key, the newest version)."""
    result = {}
    for table, source in COMPARED.items():
        rows, columns = client.execute(f"SELECT * FROM {source}", with_column_types=True)
        names = [name for name, _ in columns]
        result[table] = [{n: _as_written(v) for n, v in zip(names, row, strict=True)} for row in rows]
    return result
