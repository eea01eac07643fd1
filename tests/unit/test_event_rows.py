"""The raw ``events`` row of an accepted event (``streams.stages.rows.event_row``) and the
``minute_totals`` row: tuples in their table's column order, so each value must sit under the
column that names it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import EVENTS, MINUTE_TOTALS
from streams.core.events import Click, Event, Purchase, Share, Support, TicketAction
from streams.core.windows import EventTime
from streams.errors import SinkError
from streams.settings import load_settings
from streams.stages.records import InputRecord
from streams.stages.rows import event_row, minute_totals_row

RECORD = InputRecord("t.purchases", 3, 41, b"cust-1", b"", 1_700_000_000_123)
TIME = EventTime(1_700_000_000_000, late=True, clamped=False)


def _distinct(cls: type[Event], anonymous: bool) -> Event:
    """An event whose every field holds a value of its own, named after the field."""
    values: dict[str, Any] = {}
    for number, field in enumerate(dataclasses.fields(cls)):
        values[field.name] = 1_000 + number if field.type in ("int", "int | None") else f"<{field.name}>"
    values.update(occurred_at_ms=1_699_999_000_000, customer_id="" if anonymous else "cust-1",
                  anonymous_id="anon-1" if anonymous else None)
    if cls is Support:
        values.update(action=TicketAction.RESOLVED, satisfaction=4)
    return cls(**values)


@pytest.mark.parametrize("anonymous", [False, True])
@pytest.mark.parametrize("cls", [Click, Share, Purchase, Support])
def test_every_column_named_like_a_field_of_the_event_holds_it_and_the_others_are_null(
        cls: type[Event], anonymous: bool) -> None:
    event = _distinct(cls, anonymous)
    row = dict(zip(EVENTS.column_names, event_row(RECORD, event, TIME), strict=True))
    fields = {f.name for f in dataclasses.fields(cls)} - {"customer_id", "anonymous_id", "occurred_at_ms"}
    expected: dict[str, Any] = {name: None for name in EVENTS.column_names}
    expected.update({name: getattr(event, name) for name in fields})
    if cls is Support:
        expected["action"] = "resolved"
    expected.update(customer_id=event.actor_id, event_type=cls.type, occurred_at_ms=TIME.occurred_at_ms,
                    ingest_ms=RECORD.timestamp, is_late=1, is_clamped=0, source_topic=RECORD.topic,
                    source_partition=RECORD.partition, source_offset=RECORD.offset)
    assert row == expected


def test_the_sink_takes_an_event_row_and_refuses_one_of_another_length() -> None:
    sink = ClickHouseSink(load_settings({}), lambda: None)  # type: ignore[arg-type, return-value]
    values = event_row(RECORD, _distinct(Click, anonymous=False), TIME)
    sink.add("events", values)
    assert sink.buffered("events") == [dict(zip(EVENTS.column_names, values, strict=True))]
    with pytest.raises(SinkError, match="24 values for 25 columns"):
        sink.add("events", values[:-1])


def test_a_minute_totals_row_holds_each_value_under_its_column() -> None:
    values = minute_totals_row(1_700_000_040_000, "purchase|mobile|app", 3, 7, 1_250)
    assert dict(zip(MINUTE_TOTALS.column_names, values, strict=True)) == {
        "minute_start": 1_700_000_040_000, "event_type": "purchase", "channel": "mobile|app",
        "source_partition": 3, "events": 7, "revenue_cents": 1_250, "version": 7}
