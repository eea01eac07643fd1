"""Reads the pipeline's tables back from ClickHouse as the stages wrote them (times in ms)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clickhouse_driver import Client

COMPARED_TABLES = ("customer_profiles", "customer_hourly", "customer_daily", "minute_totals", "referral_credits")


def _as_written(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000) if value.tzinfo is None else int(
            value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1000)
    return value


def read_final_rows(client: Client) -> dict[str, list[dict[str, Any]]]:
    """Every compared table's current rows (``FINAL``: one row per key, the newest version)."""
    result = {}
    for table in COMPARED_TABLES:
        rows, columns = client.execute(f"SELECT * FROM {table} FINAL", with_column_types=True)
        names = [name for name, _ in columns]
        result[table] = [{n: _as_written(v) for n, v in zip(names, row, strict=True)} for row in rows]
    return result
