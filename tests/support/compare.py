"""Turns pipeline rows (ClickHouse column names) into the oracle's shapes, and lists the
fields that differ, so a failure names the customer, bucket or credit and the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.clickhouse.tables import TABLES
from streams.tools.oracle import Expected

TABLE_KEYS: dict[str, tuple[str, ...]] = {name: table.key for name, table in TABLES.items()}
CREDIT_FIELDS = ("credit_id", "sharer_customer_id", "referred_customer_id", "share_id", "touch_type",
                 "amount_cents")
BUCKET_FIELDS = ("events", "clicks", "shares", "purchases", "support_events", "revenue_cents")


def profile_as_oracle(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``customer_profiles`` row in the oracle's field names."""
    out = {k: v for k, v in row.items() if k not in ("customer_id", "version", "share_networks",
                                                     "share_network_counts")}
    for name in ("first_seen_at", "last_seen_at", "last_purchase_at"):
        out[name] = out.pop(f"{name}_ms")
    out["shares_by_network"] = dict(zip(row["share_networks"], row["share_network_counts"], strict=True))
    out["avg_first_reply_seconds"] = _average_seconds(row["first_reply_ms_total"], row["first_reply_count"])
    out["avg_resolution_seconds"] = _average_seconds(row["resolution_ms_total"], row["resolution_count"])
    return out


def _average_seconds(total_ms: int, count: int) -> int:
    return total_ms // count // 1000 if count else 0


def _without_tickets(profile: Mapping[str, Any]) -> dict[str, Any]:
    # Per-ticket detail lives in state, not in ClickHouse; its totals are compared instead.
    return {k: v for k, v in profile.items() if k != "tickets"}


def differences(expected: Mapping[Any, Mapping[str, Any]], actual: Mapping[Any, Mapping[str, Any]],
                limit: int = 20) -> list[str]:
    """Human-readable differences between two keyed collections of records (field by field)."""
    problems = []
    for key in sorted(set(expected) | set(actual), key=repr):
        want, got = expected.get(key), actual.get(key)
        if want is None or got is None:
            problems.append(f"{key!r}: expected {'nothing' if want is None else 'a row'}, "
                            f"got {'nothing' if got is None else 'a row'}")
            continue
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                problems.append(f"{key!r}.{name}: expected {want.get(name)!r}, got {got.get(name)!r}")
        if len(problems) >= limit:
            break
    return problems[:limit]


def compare_all(expected: Expected, rows: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, list[str]]:
    """Compare every table's final rows with the oracle; only non-empty difference lists are kept.

    Rows of anonymous ids identified as a customer are left out, as the analyst views leave them
    out: the customer's rows hold them."""
    merged = expected.identities
    profiles = {r["customer_id"]: profile_as_oracle(r) for r in rows["customer_profiles"]
                if r["customer_id"] not in merged}
    hourly = {(r["customer_id"], r["hour_start"]): {f: r[f] for f in BUCKET_FIELDS} for r in rows["customer_hourly"]
              if r["customer_id"] not in merged}
    daily = {(r["customer_id"], r["day"]): {f: r[f] for f in BUCKET_FIELDS} for r in rows["customer_daily"]
             if r["customer_id"] not in merged}
    minutes: dict[tuple[int, str, str], dict[str, int]] = {}
    for r in rows["minute_totals"]:
        total = minutes.setdefault((r["minute_start"], r["event_type"], r["channel"]),
                                   {"events": 0, "revenue_cents": 0})
        total["events"] += r["events"]
        total["revenue_cents"] += r["revenue_cents"]
    credits = {r["credit_id"]: {k: r[k] for k in CREDIT_FIELDS} for r in rows["referral_credits"]}
    result = {
        "customer_profiles": differences({c: _without_tickets(p) for c, p in expected.profiles.items()},
                                         profiles),
        "customer_hourly": differences(expected.hourly, hourly),
        "customer_daily": differences(expected.daily, daily),
        "minute_totals": differences(expected.minutes, minutes),
        "referral_credits": differences(
            {k: {f: c[f] for f in CREDIT_FIELDS} for k, c in expected.credits.items()}, credits),
    }
    return {table: problems for table, problems in result.items() if problems}
