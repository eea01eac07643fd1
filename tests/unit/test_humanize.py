"""Numbers, durations, money and rows as the command line prints them."""

from __future__ import annotations

import datetime as dt

import pytest

from streams.tools.humanize import count, duration, money, table, value, vertical


@pytest.mark.parametrize(("raw", "unit", "text"), [
    (0, "", "0"), (1234, "events", "1,234 events"), (1_234_567, "", "1,234,567"), (2630.0, "records", "2,630 records"),
    (12.25, "", "12.2"),
])
def test_count(raw: float, unit: str, text: str) -> None:
    assert count(raw, unit) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250 ms"), (3.61, "3.6 s"), (42.4, "42 s"), (59.7, "1 min"), (125, "2 min 5 s"), (3_600, "1 h"),
    (7_260, "2 h 1 min"), (90_000, "1 d 1 h"), (-3.6, "-3.6 s"),
])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("cents", "text"), [
    (1234, "EUR 12.34"), (5, "EUR 0.05"), (123_456_789, "EUR 1,234,567.89"), (-1234, "EUR -12.34"), (0, "EUR 0.00"),
])
def test_money_from_integer_cents(cents: int, text: str) -> None:
    assert money(cents, "EUR") == text


def test_values_are_formatted_by_what_their_column_holds() -> None:
    assert value("revenue_cents", 250_075, "EUR") == "EUR 2,500.75"
    assert value("avg_first_reply_seconds", 3_725, "EUR") == "1 h 2 min"
    assert value("avg_resolution_seconds", None, "EUR") == "-"
    assert value("first_reply_ms_total", 132_079_558, "EUR") == "1 d 12 h"
    assert value("events", 10_000, "EUR") == "10,000"
    assert value("last_seen_at_ms", 1_793_491_200_000, "EUR") == "1793491200000"
    assert value("avg_satisfaction", 3.6666, "EUR") == "3.67"
    assert value("last_seen_at", dt.datetime(2026, 11, 1, 9, 5), "EUR") == "2026-11-01 09:05:00"
    assert value("share_networks", ["email", "x"], "EUR") == "email, x"
    assert value("share_networks", [], "EUR") == "-"


def test_a_wide_row_prints_one_aligned_field_per_line() -> None:
    lines = vertical({"customer_id": "c-17", "events": 1234, "revenue_cents": 99}, "EUR", indent="")
    assert lines == ["customer_id    c-17", "events         1,234", "revenue_cents  EUR 0.99"]


def test_a_table_aligns_numbers_right_and_text_left() -> None:
    lines = table(["reason", "errors"], [("bad_magic", 3), ("truncated", 1_200)], "EUR", indent="")
    assert lines == ["reason     errors", "bad_magic       3", "truncated   1,200"]
