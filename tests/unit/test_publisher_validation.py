"""The JSON form and JSON-lines parsing behind ``streams publish``: pure, no producer needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.core.events import Click, Identify, Purchase, Support, TicketAction
from streams.errors import ValidationError
from streams.publisher import LineError, event_from_json, event_to_json, parse_lines
from tests.bench.sample import sample_events

PURCHASE_JSON = {
    "type": "purchase",
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2026-11-23T10:00:00Z",
    "channel": "web",
    "order_id": "o-1",
    "amount": "12.34",
    "currency": "EUR",
}
SUPPORT_JSON = {
    **{k: v for k, v in PURCHASE_JSON.items() if k not in ("order_id", "amount", "currency")},
    "type": "support",
    "ticket_id": "t",
    "action": "opened",
    "support_channel": "chat",
}
T_MS = 1_795_428_000_000  # 2026-11-23T10:00:00Z


def _field_error(obj: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        event_from_json(obj)
    return caught.value.field


def test_purchase_from_json_with_iso_time_and_decimal_string() -> None:
    assert event_from_json(PURCHASE_JSON) == Purchase("e-1", "c-1", T_MS, "web", None, "o-1", 1234, "EUR", None, None)


@pytest.mark.parametrize(
    ("occurred_at", "ms"),
    [
        (T_MS, T_MS),
        ("2026-11-23T10:00:00+00:00", T_MS),
        ("2026-11-23T11:00:00+01:00", T_MS),
        ("2026-11-23T10:00:00.0079Z", T_MS + 7),  # sub-millisecond part is cut
    ],
)
def test_occurred_at_forms(occurred_at: Any, ms: int) -> None:
    event = event_from_json({**PURCHASE_JSON, "occurred_at": occurred_at})
    assert event.occurred_at_ms == ms


@pytest.mark.parametrize(
    ("amount", "cents"), [("0.01", 1), ("12.3", 1230), ("9999999999.99", 999_999_999_999), (5, 500)]
)
def test_amount_forms_are_exact(amount: Any, cents: int) -> None:
    event = event_from_json({**PURCHASE_JSON, "amount": amount})
    assert isinstance(event, Purchase) and event.amount_cents == cents


def test_click_and_support_with_optional_fields() -> None:
    click = {"type": "click", "event_id": "e", "customer_id": "c", "occurred_at": 1, "channel": "ios"}
    assert event_from_json({**click, "page": "/", "referrer_share_id": "s"}) == Click(
        "e", "c", 1, "ios", None, "/", None, "s"
    )
    support = {**click, "type": "support", "ticket_id": "t", "action": "resolved"}
    assert event_from_json({**support, "support_channel": "chat", "satisfaction": 4}) == Support(
        "e", "c", 1, "ios", None, "t", TicketAction.RESOLVED, "chat", 4
    )


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (["not", "an", "object"], "event"),
        ({k: v for k, v in PURCHASE_JSON.items() if k != "type"}, "type"),
        ({**PURCHASE_JSON, "type": "refund"}, "type"),
        ({k: v for k, v in PURCHASE_JSON.items() if k != "event_id"}, "event_id"),
        ({**PURCHASE_JSON, "customer_id": None}, "customer_id"),
        ({**PURCHASE_JSON, "order_id": 17}, "order_id"),
        ({**PURCHASE_JSON, "amount": 12.34}, "amount"),
        ({**PURCHASE_JSON, "amount": "12.345"}, "amount"),
        ({**PURCHASE_JSON, "amount": "twelve"}, "amount"),
        ({**PURCHASE_JSON, "amount": "NaN"}, "amount"),
        ({**PURCHASE_JSON, "amount": True}, "amount"),
        ({**PURCHASE_JSON, "occurred_at": "2026-11-23T10:00:00"}, "occurred_at"),
        ({**PURCHASE_JSON, "occurred_at": "yesterday"}, "occurred_at"),
        ({**PURCHASE_JSON, "occurred_at": 1.5}, "occurred_at"),
        ({**PURCHASE_JSON, "referer_share_id": "s"}, "referer_share_id"),
        ({**SUPPORT_JSON, "action": "closed"}, "action"),
        ({**SUPPORT_JSON, "satisfaction": True}, "satisfaction"),
        ({**SUPPORT_JSON, "satisfaction": "5"}, "satisfaction"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_errors_name_the_field(obj: Any, field: str) -> None:
    assert _field_error(obj) == field


def test_json_form_round_trips_every_event() -> None:
    for event in sample_events(400):
        obj = json.loads(json.dumps(event_to_json(event)))
        assert event_from_json(obj) == event


def test_parse_lines_numbers_lines_from_one_and_keeps_going() -> None:
    good = json.dumps(PURCHASE_JSON)
    lines = [
        good,
        "",
        "{not json",
        json.dumps({**PURCHASE_JSON, "currency": "USD"}),
        "   ",
        json.dumps({**PURCHASE_JSON, "amount": "0.00"}),
        good,
        json.dumps({**PURCHASE_JSON, "network": "x"}),
    ]
    parsed = list(parse_lines(lines, "EUR"))
    assert [number for number, _ in parsed] == [1, 3, 4, 6, 7, 8]
    errors = {number: item for number, item in parsed if isinstance(item, LineError)}
    assert sorted(errors) == [3, 4, 6, 8]
    assert errors[3].message.startswith("invalid JSON")
    assert "currency" in errors[4].message
    assert "amount" in errors[6].message
    assert "network" in errors[8].message
    assert all(e.line == n for n, e in errors.items())
    assert isinstance(parsed[0][1], Purchase) and isinstance(parsed[4][1], Purchase)


# --- anonymous visitors and identify ---------------------------------------------------------

ANONYMOUS_CLICK_JSON = {"type": "click", "event_id": "e-9", "anonymous_id": "dev-1",
                        "occurred_at": "2026-11-23T10:00:00Z", "channel": "web", "page": "/"}
IDENTIFY_JSON = {"type": "identify", "event_id": "i-1", "anonymous_id": "dev-1", "customer_id": "c-1",
                 "occurred_at": "2026-11-23T10:00:00Z", "channel": "web"}


def test_anonymous_events_and_identifies_from_json() -> None:
    click = event_from_json(ANONYMOUS_CLICK_JSON)
    assert isinstance(click, Click)
    assert (click.customer_id, click.anonymous_id, click.actor_id) == ("", "dev-1", "dev-1")
    identify = event_from_json(IDENTIFY_JSON)
    assert identify == Identify("i-1", "c-1", T_MS, "web", None, "dev-1")
    assert event_from_json(event_to_json(identify)) == identify
    assert _field_error({k: v for k, v in IDENTIFY_JSON.items() if k != "customer_id"}) == "customer_id"


def test_streams_publish_reports_sentinel_ids_per_line() -> None:
    lines = [json.dumps({**ANONYMOUS_CLICK_JSON, "anonymous_id": "NULL"}),
             json.dumps({**IDENTIFY_JSON, "customer_id": " guest "}),
             json.dumps(IDENTIFY_JSON)]
    parsed = list(parse_lines(lines, "EUR"))
    assert [str(item) for _, item in parsed[:2]] == [
        "LineError(line=1, message=\"sentinel_id: anonymous_id: 'NULL' identifies no one\")",
        "LineError(line=2, message=\"sentinel_id: customer_id: ' guest ' identifies no one\")"]
    assert isinstance(parsed[2][1], Identify)
