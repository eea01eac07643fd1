"""The rows the views ``customer_hourly_all``, ``customer_daily_all`` and ``minute_totals_by_type``
show, computed from the tables' rows as their SQL computes them (migration 0011_history): the
live buckets plus the buckets of backfilled events, counted from ``events`` by person. The
in-memory pipeline has tables and no views; its results are compared through this. Erased
people are not left out here as ``identity_events`` leaves them out: the tests of erasure
import no history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.core.windows import DAY_MS, HOUR_MS, MINUTE_MS, floor_to
from tests.support.compare import BUCKET_FIELDS

Rows = Mapping[str, list[dict[str, Any]]]


def as_views(tables: Rows) -> dict[str, list[dict[str, Any]]]:
    """``tables`` with the hourly, daily and per-minute rows replaced by what the views show."""
    persons = {r["anonymous_id"]: r["customer_id"] for r in tables.get("identity_map", ())}
    history = [r for r in tables.get("events", ()) if r["source_topic"].endswith(".backfill")]
    shown = dict(tables)
    for table, start, size in (("customer_hourly", "hour_start", HOUR_MS), ("customer_daily", "day", DAY_MS)):
        counted = [{"customer_id": persons.get(r["customer_id"], r["customer_id"]),
                    start: floor_to(r["occurred_at_ms"], size), **_counts(r)} for r in history]
        shown[table] = _summed([*tables.get(table, ()), *counted], ("customer_id", start), BUCKET_FIELDS)
    minutes = [{"minute_start": floor_to(r["occurred_at_ms"], MINUTE_MS), "event_type": r["event_type"],
                "channel": r["channel"], "events": 1, "revenue_cents": r["amount_cents"] or 0} for r in history]
    shown["minute_totals"] = _summed([*tables.get("minute_totals", ()), *minutes],
                                     ("minute_start", "event_type", "channel"), ("events", "revenue_cents"))
    return shown


def _counts(event: Mapping[str, Any]) -> dict[str, int]:
    kind = event["event_type"]
    return {"events": 1, "clicks": int(kind == "click"), "shares": int(kind == "share"),
            "purchases": int(kind == "purchase"), "support_events": int(kind == "support"),
            "revenue_cents": event["amount_cents"] or 0}


def _summed(rows: Iterable[Mapping[str, Any]], key: tuple[str, ...], fields: Iterable[str]) -> list[dict[str, Any]]:
    fields = tuple(fields)
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(tuple(row[k] for k in key), {**{k: row[k] for k in key}, **dict.fromkeys(fields, 0)})
        for name in fields:
            total[name] += row[name]
    return list(totals.values())
