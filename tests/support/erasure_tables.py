"""The eraser's scenario, shared by its tests on chdb (modern engine), ClickHouse 18.16 and the
cluster profile: an erased customer (with an anonymous id identified as it, erased with it) and
a kept one, with rows in every table that names customers, and the tombstones and
``erasure_requests`` rows the worker writes when it erases them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from streams.clickhouse.erasure import PurgeReport, pending_erasures, purge_once, remaining_rows, request_status
from streams.clickhouse.erasure_sql import ERASURE_TARGETS, quote
from streams.clickhouse.sink import ClickHouseSink
from streams.core.erasure import ACKNOWLEDGING_STAGES, acknowledged, keyed_hash
from streams.settings import Settings
from tests.support.rows import row

KEY = b"eraser-test-key-0123"
REQUEST = "ticket-4711"
GONE = "c-o'gone\\"  # a quote and a backslash: SQL that names it must escape them
GONE_DEVICE = "a-gone"  # identified as GONE, erased with it
KEPT = "c-kept"
KEPT_DEVICE = "a-kept"
THIRD = "c-third"
ERASED = (GONE, GONE_DEVICE)
HOUR = 3_600_000
WAIT_S = 10.0  # for a delete, per cycle
PARTITIONS = 4  # the settings' topic_partitions: each partition of each stage acknowledges

#: Rows naming each erased id, per table (one row per key: merges cannot change the counts).
EXPECTED_ROWS = {
    GONE: {"events": 1, "customer_profiles": 1, "customer_hourly": 1, "customer_daily": 1,
           "referral_credits": 1, "identity_map": 1, "ingestion_errors": 1},
    GONE_DEVICE: {"events": 1, "customer_profiles": 1, "customer_hourly": 0, "customer_daily": 0,
                  "referral_credits": 1, "identity_map": 1, "ingestion_errors": 0},
}


def id_hash(value: str) -> str:
    return keyed_hash(KEY, value)


def table_rows(now_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """Rows of GONE, GONE_DEVICE, KEPT and THIRD in every table that names customers."""
    day = now_ms // (24 * HOUR) * (24 * HOUR)

    def event(event_id: str, customer: str) -> tuple[str, dict[str, Any]]:
        return ("events", row("events", event_id=event_id, event_type="click", customer_id=customer,
                              occurred_at_ms=now_ms - HOUR, ingest_ms=now_ms - HOUR, channel="web",
                              source_topic="interactions.clicks", source_offset=len(event_id)))

    def profile(customer: str, events: int, open_tickets: int) -> tuple[str, dict[str, Any]]:
        return ("customer_profiles", row("customer_profiles", customer_id=customer, version=1, events=events,
                                         clicks=events, open_tickets=open_tickets, last_seen_at_ms=now_ms,
                                         segment="new"))

    def buckets(customer: str, events: int) -> list[tuple[str, dict[str, Any]]]:
        values = {"customer_id": customer, "events": events, "clicks": events, "version": 1}
        return [("customer_hourly", row("customer_hourly", hour_start=day + HOUR, **values)),
                ("customer_daily", row("customer_daily", day=day, **values))]

    def credit(credit_id: str, sharer: str, referred: str) -> tuple[str, dict[str, Any]]:
        return ("referral_credits", row("referral_credits", credit_id=credit_id, sharer_customer_id=sharer,
                                        referred_customer_id=referred, share_id="s-" + credit_id,
                                        touch_type="click", touch_occurred_at_ms=now_ms - HOUR))

    def error(offset: int, key: str) -> tuple[str, dict[str, Any]]:
        return ("ingestion_errors", row("ingestion_errors", kind="dead_letter", reason="invalid_field",
                                        error_class="ValidationError", source_topic="interactions.clicks",
                                        source_offset=offset, record_key=key, ingest_ms=now_ms, payload="AA=="))

    return [
        event("e-gone", GONE), event("e-gone-device", GONE_DEVICE), event("e-kept", KEPT),
        profile(GONE, 5, 2), profile(GONE_DEVICE, 1, 0), profile(KEPT, 3, 1),
        *buckets(GONE, 5), *buckets(KEPT, 3),
        credit("t-1", GONE, KEPT), credit("t-2", KEPT, GONE_DEVICE), credit("t-3", KEPT, THIRD),
        ("identity_map", row("identity_map", anonymous_id=GONE_DEVICE, customer_id=GONE, version=1)),
        ("identity_map", row("identity_map", anonymous_id=KEPT_DEVICE, customer_id=KEPT, version=1)),
        error(1, GONE), error(2, KEPT),
    ]


def tombstone_rows(now_ms: int, erased_at_ms: int | None = None,
                   acknowledged_by: int = PARTITIONS) -> list[tuple[str, dict[str, Any]]]:
    """What the worker writes for the erased ids: their tombstones and first progress rows, and
    the acknowledgements of the first ``acknowledged_by`` partitions of each stage."""
    out: list[tuple[str, dict[str, Any]]] = []
    for customer in ERASED:
        hashes = {"customer_hash": id_hash(customer), "request_hash": id_hash(REQUEST)}
        out.append(("erased_customers", row("erased_customers", customer_id=customer,
                                            erased_at_ms=now_ms if erased_at_ms is None else erased_at_ms, **hashes)))
        out += [("erasure_requests", row("erasure_requests", target=target, status=status, requested_at_ms=now_ms - 5,
                                         updated_at_ms=now_ms, version=1, **hashes))
                for target, status in (("state", "erased"), ("request", "hidden"))]
        ack = {"r": hashes["request_hash"], "c": hashes["customer_hash"], "at": now_ms - 5}
        out += [("erasure_requests", acknowledged(ack, stage, partition, now_ms))
                for stage in ACKNOWLEDGING_STAGES for partition in range(acknowledged_by)]
    return out


def write(settings: Settings, client: Any, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Through the sink, on ``client``, in one flush."""
    sink = ClickHouseSink(settings, lambda: client)
    for table, values in rows:
        sink.add(table, values)
    asyncio.run(sink.flush())
    assert sink.buffered_rows == 0


def shown_ids(client: Any) -> set[str]:
    """Every id the per-customer views show, as an id or as a person."""
    columns = {"customer_360": ("customer_id",), "person_360": ("customer_id",), "customer_rfm": ("customer_id",),
               "referral_leaderboard": ("sharer_customer_id",),
               "identity_events": ("customer_id", "person_id"),
               "identity_credits": ("sharer_customer_id", "referred_customer_id", "sharer_person_id",
                                    "referred_person_id"),
               "person_referral_leaderboard": ("sharer_person_id",)}
    return {str(value) for view, names in columns.items()
            for found in client.execute(f"SELECT {', '.join(names)} FROM {view}") for value in found}


def totals(client: Any) -> tuple[Any, ...]:
    """The aggregate views' numbers that erased customers took part in."""
    [events] = client.execute("SELECT sum(events) FROM daily_engagement")[0]
    [tickets] = client.execute("SELECT open_tickets FROM support_kpis")[0]
    [clicked] = client.execute("SELECT sum(clicked_customers) FROM click_to_purchase_funnel")[0]
    [referred] = client.execute("SELECT sum(referred_clicks) FROM referral_leaderboard")[0]
    return int(events), int(tickets), int(clicked), int(referred)


#: totals() with only KEPT (and THIRD, who has no rows of its own) left: KEPT's 3 events, 1 open
#: ticket, 1 clicking customer, and the one credit naming neither erased id (t-3).
TOTALS_WITHOUT_ERASED = (3, 1, 1, 1)


def other_rows(client: Any) -> dict[str, list[str]]:
    """Per table, the rows naming no erased id, sorted (what the eraser must leave as it is)."""
    erased = ", ".join(quote(i) for i in ERASED)
    out = {}
    for table, columns in ERASURE_TARGETS.items():
        where = " AND ".join(f"{column} NOT IN ({erased})" for column in columns)
        out[table] = sorted(repr(r) for r in client.execute(f"SELECT * FROM {table} WHERE {where}"))
    return out


def purge_until_verified(settings: Settings, client: Any, now_ms: int, cycles: int = 20) -> list[PurgeReport]:
    """:func:`purge_once` until both erased ids are verified (or ``cycles`` passes)."""
    reports: list[PurgeReport] = []
    while len(reports) < cycles and sum(len(r.verified) for r in reports) < len(ERASED):
        reports.append(purge_once(settings, client, now_ms=now_ms, wait_s=WAIT_S))
    return reports


def progress(client: Any) -> dict[tuple[str, str], tuple[str, int, int]]:
    """(customer hash, target) -> (status, rows, version) of the request's erasure_requests rows."""
    rows = client.execute(f"SELECT customer_hash, target, status, rows, version FROM erasure_requests FINAL "
                          f"WHERE request_hash = {quote(id_hash(REQUEST))}")
    return {(str(h), str(t)): (str(s), int(n), int(v)) for h, t, s, n, v in rows}


def expected_progress() -> dict[tuple[str, str], tuple[str, int, int]]:
    """What erasure_requests holds once both ids are verified."""
    out = {}
    for customer, per_table in EXPECTED_ROWS.items():
        out[(id_hash(customer), "state")] = ("erased", 0, 1)
        out |= {(id_hash(customer), f"{stage}/{p}"): ("cleared", 0, 1)
                for stage in ACKNOWLEDGING_STAGES for p in range(PARTITIONS)}
        out[(id_hash(customer), "request")] = ("verified", sum(per_table.values()), 3)
        out |= {(id_hash(customer), table): ("verified", rows, 3) for table, rows in per_table.items()}
    return out


#: A mutation that fails on every attempt, so it stays unfinished (18.16 cannot kill it: drop
#: the table). Modern servers (chdb) wait for it and raise; 18.16 returns at once.
STUCK_MUTATION = (
    "CREATE TABLE stuck (a UInt8) ENGINE = MergeTree ORDER BY a",
    "INSERT INTO stuck SELECT 1",
    "ALTER TABLE stuck DELETE WHERE throwIf(a = 1)",
)


class LateRowClient:
    """``client``, writing one more event of GONE right after the first delete from ``events``
    is queued: a row the delete cannot see (a mutation changes only the rows before it)."""

    def __init__(self, settings: Settings, client: Any, now_ms: int) -> None:
        self.settings, self.client, self.now_ms = settings, client, now_ms
        self.written = False

    def execute(self, query: str, params: Any = None, **kwargs: Any) -> Any:
        result = self.client.execute(query, params, **kwargs)
        if not self.written and query.startswith("ALTER TABLE") and ".events DELETE" in query:
            self.written = True
            late = row("events", event_id="e-gone-late", event_type="click", customer_id=GONE,
                       occurred_at_ms=self.now_ms, ingest_ms=self.now_ms, channel="web",
                       source_topic="interactions.clicks", source_offset=99)
            write(self.settings, self.client, [("events", late)])
        return result

    def disconnect(self) -> None:
        self.client.disconnect()


# -- the scenarios, each on a migrated database holding table_rows() and no tombstone ----------


def views_hide_erased_ids_at_once(settings: Settings, client: Any, now_ms: int) -> None:
    assert set(ERASED) <= shown_ids(client) and totals(client) != TOTALS_WITHOUT_ERASED
    write(settings, client, tombstone_rows(now_ms))
    assert not set(ERASED) & shown_ids(client)
    assert KEPT in shown_ids(client)
    assert totals(client) == TOTALS_WITHOUT_ERASED
    assert sum(remaining_rows(client, ERASED).values()) > 0  # hidden, not deleted yet


def purge_deletes_verifies_records_and_forgets(settings: Settings, client: Any, now_ms: int) -> None:
    kept = other_rows(client)
    write(settings, client, tombstone_rows(now_ms - 90_000))
    reports = purge_until_verified(settings, client, now_ms)
    assert sorted((v.customer_hash, v.seconds) for r in reports for v in r.verified) == sorted(
        (id_hash(i), 90.0) for i in ERASED)
    assert not any(r.throttled for r in reports)
    assert set(remaining_rows(client, ERASED).values()) == {0}
    assert other_rows(client) == kept
    assert progress(client) == expected_progress()
    assert pending_erasures(client, 10) == []
    assert client.execute("SELECT count() FROM erased_customers") == [(0,)]
    statuses = {(target, status) for _, target, status, *_ in request_status(client, id_hash(REQUEST))}
    assert ("request", "verified") in statuses and ("events", "verified") in statuses
    # Nothing left to do: a further cycle changes nothing.
    [again] = purge_until_verified(settings, client, now_ms, cycles=1)
    assert again.verified == () and again.still_pending == 0
    assert progress(client) == expected_progress()
    # The request repeated: its tombstones come back, are verified again and go; the counts stay.
    write(settings, client, tombstone_rows(now_ms))
    [repeated] = purge_until_verified(settings, client, now_ms, cycles=1)
    assert len(repeated.verified) == len(ERASED) and repeated.still_pending == 0
    assert progress(client) == expected_progress()
    assert pending_erasures(client, 10) == []


def no_delete_starts_while_mutations_run(settings: Settings, client: Any, now_ms: int,
                                         start_stuck_mutation: Callable[[], None]) -> None:
    overdue_at = now_ms - settings.erasure_deadline_s * 1000 - 1000
    write(settings, client, tombstone_rows(now_ms, erased_at_ms=overdue_at))
    start_stuck_mutation()
    report = purge_once(dataclasses.replace(settings, eraser_max_mutations=1), client, now_ms=now_ms, wait_s=WAIT_S)
    assert (report.throttled, report.verified, report.still_pending, report.overdue, report.running_mutations) == (
        True, (), 2, 2, 1)
    assert remaining_rows(client, ERASED)["events"] == 2 and len(pending_erasures(client, 10)) == 2
    # One more allowed: the deletes start beside the stuck mutation.
    report = purge_once(dataclasses.replace(settings, eraser_max_mutations=2), client, now_ms=now_ms, wait_s=WAIT_S)
    assert (report.throttled, len(report.verified), report.still_pending, report.overdue) == (False, 2, 0, 0)


def rows_left_keep_the_tombstone_until_a_later_cycle(settings: Settings, client: Any, now_ms: int) -> None:
    write(settings, client, tombstone_rows(now_ms))
    first = purge_once(settings, LateRowClient(settings, client, now_ms), now_ms=now_ms, wait_s=WAIT_S)
    assert [v.customer_hash for v in first.verified] == [id_hash(GONE_DEVICE)] and first.still_pending == 1
    assert [t.customer_id for t in pending_erasures(client, 10)] == [GONE]
    assert GONE not in shown_ids(client)  # still hidden
    second = purge_once(settings, client, now_ms=now_ms, wait_s=WAIT_S)
    assert [v.customer_hash for v in second.verified] == [id_hash(GONE)] and second.still_pending == 0
    assert set(remaining_rows(client, ERASED).values()) == {0}
    # The rows deleted are those counted when the delete started, not the late one.
    assert progress(client) == expected_progress()


def nothing_is_deleted_before_every_partition_acknowledges(settings: Settings, client: Any, now_ms: int) -> None:
    """Rows naming an id may still be on their way from a stage's sink until every partition of
    both stages has acknowledged the erasure: until then the eraser deletes and verifies nothing."""
    write(settings, client, tombstone_rows(now_ms, acknowledged_by=PARTITIONS - 1))
    before = remaining_rows(client, ERASED)
    report = purge_once(settings, client, now_ms=now_ms, wait_s=WAIT_S)
    assert (report.verified, report.still_pending) == ((), len(ERASED))
    assert remaining_rows(client, ERASED) == before and not set(ERASED) & shown_ids(client)
    write(settings, client, tombstone_rows(now_ms))  # the last partitions acknowledge
    assert sum(len(r.verified) for r in purge_until_verified(settings, client, now_ms)) == len(ERASED)
    assert set(remaining_rows(client, ERASED).values()) == {0}
