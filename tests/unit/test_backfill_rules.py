"""The pure rules of backfilled history (streams.core.history) and of ``streams backfill``'s
reading and bookkeeping (streams.tools.backfill), one by one."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest

from streams.contracts.registry import EmbeddedRegistry
from streams.core.events import Click, EventType, Identify
from streams.core.history import (
    check_before_cutover,
    cutover_headers,
    hold_back_backfill,
    read_cutover,
)
from streams.errors import DecodeError
from streams.publisher import LineError
from streams.tools.backfill import after_cutover, parse_cutover, progress_line, read_items
from streams.tools.backfill_ledger import ImportState, import_id

CUTOVER = 1_795_132_800_000  # 2026-11-20T00:00:00Z
T = CUTOVER - 86_400_000


def test_a_backfill_record_carries_its_cut_over_and_one_without_it_is_refused() -> None:
    assert read_cutover(cutover_headers(CUTOVER)) == CUTOVER
    assert read_cutover([("other", b"x"), *cutover_headers(5)]) == 5
    for headers in ([], [("cutover", b"soon")]):
        with pytest.raises(DecodeError) as refused:
            read_cutover(headers)
        assert refused.value.reason == "bad_backfill"


def test_history_is_what_occurred_before_the_cut_over() -> None:
    check_before_cutover(CUTOVER - 1, CUTOVER)
    with pytest.raises(DecodeError) as refused:
        check_before_cutover(CUTOVER, CUTOVER)
    assert refused.value.reason == "after_cutover"
    click = Click("e1", "c1", CUTOVER, "web", None, "/", None, None)
    assert after_cutover(click, CUTOVER) and not after_cutover(click, CUTOVER + 1)
    assert not after_cutover(Identify("i1", "c1", CUTOVER + 5, "web", None, "dev-1"), CUTOVER)  # links, not activity


@pytest.mark.parametrize(("holding", "behind_s", "held"), [
    (False, None, False), (False, 2.4, False), (False, 2.6, True),  # stops past half the bound
    (True, 2.0, True), (True, 1.2, False), (True, None, False),  # goes on under a quarter, or without live records
])
def test_the_backfill_waits_while_live_records_are_behind(holding: bool, behind_s: float | None, held: bool) -> None:
    assert hold_back_backfill(holding, behind_s, bound_s=5.0) is held


def line(**fields: object) -> str:
    return json.dumps({"type": "click", "event_id": "e", "customer_id": "c1", "occurred_at": T, "channel": "web",
                       "page": "/", **fields})


def test_json_lines_are_checked_and_bad_ones_reported_by_line_number() -> None:
    text = "\n".join([line(event_id="e1"), "{broken", "", line(event_id="e2", customer_id="null"),
                      line(event_id="e3", occurred_at="2026-11-19T10:00:00Z")]) + "\n"
    latin1 = line(event_id="e4", customer_id="J-X").replace("J-X", "José").encode("latin-1")  # refused, not altered
    items = list(read_items(io.BytesIO(text.encode() + latin1 + b"\n"), "EUR"))
    assert [number for number, _ in items] == [1, 2, 4, 5, 6]
    assert [type(item).__name__ for _, item in items] == ["Click", "LineError", "LineError", "Click", "LineError"]
    broken, sentinel, encoding = items[1][1], items[2][1], items[4][1]
    assert isinstance(broken, LineError) and broken.line == 2 and "invalid JSON" in broken.message
    assert isinstance(sentinel, LineError) and "sentinel_id" in sentinel.message
    assert isinstance(encoding, LineError) and "not UTF-8" in encoding.message


def test_an_avro_container_file_of_a_contract_is_read_with_its_record_numbers() -> None:
    _, schema = EmbeddedRegistry().latest(EventType.PURCHASE)
    good = {f["name"]: None for f in schema["fields"]} | {
        "event_id": "p1", "customer_id": "c1", "occurred_at": T, "channel": "web", "order_id": "o1",
        "amount": Decimal("12.34"), "currency": "EUR"}
    file = io.BytesIO()
    fastavro.writer(file, fastavro.parse_schema(schema), [good, good | {"event_id": "p2", "currency": "USD"}])
    file.seek(0)
    (first, purchase), (second, error) = read_items(file, "EUR")
    assert (first, second) == (1, 2)
    assert purchase.amount_cents == 1234 and purchase.occurred_at_ms == T  # type: ignore[union-attr]
    assert isinstance(error, LineError) and "currency" in error.message


def test_a_container_file_of_another_schema_is_refused_whole() -> None:
    schema = {"type": "record", "name": "Other", "namespace": "elsewhere", "fields": [{"name": "x", "type": "int"}]}
    file = io.BytesIO()
    fastavro.writer(file, fastavro.parse_schema(schema), [{"x": 1}])
    file.seek(0)
    with pytest.raises(Exception, match="not an Avro container file of an interaction event contract"):
        list(read_items(file, "EUR"))


def test_an_import_is_named_by_its_content_and_cut_over_and_its_progress_round_trips() -> None:
    assert import_id("abc", 5) != import_id("abc", 6) != import_id("abd", 5)
    state = ImportState("history.jsonl", CUTOVER, done=2_000, sent=1_990, invalid=3, after_cutover=7,
                        already_live=2, offsets={"0": 12, "3": 40})
    assert ImportState.decode(state.encode()) == state


def test_the_cut_over_is_epoch_ms_or_an_iso_time_with_an_offset() -> None:
    assert parse_cutover(str(CUTOVER)) == CUTOVER
    assert parse_cutover("2026-11-20T00:00:00Z") == parse_cutover("2026-11-20T01:00:00+01:00") == CUTOVER
    with pytest.raises(Exception, match="UTC offset"):
        parse_cutover("2026-11-20T00:00:00")


def test_progress_shows_share_rate_and_time_left() -> None:
    state = ImportState("f", CUTOVER, sent=5_000, invalid=1)
    shown = progress_line(250, 1_000, state, sent_now=5_000, elapsed_s=10.0)
    assert "25.0% of the file" in shown and "5,000 events sent" in shown and "500 events/s" in shown
    assert "ETA 30 s" in shown
