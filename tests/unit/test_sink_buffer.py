"""ClickHouseSink's buffer and retry logic against a fake client (the real server is covered by
tests/integration/test_clickhouse.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest
from clickhouse_driver.errors import ServerException

from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES
from streams.errors import SinkError, SinkRejected
from streams.settings import Settings, load_settings


class FakeClient:
    """Records inserts; raises ``error`` (by default a refused connection) for the first
    ``fail_times`` calls (per table when a dict)."""

    def __init__(self, fail_times: int | dict[str, int] = 0, error: Exception | None = None) -> None:
        self.fail_times = fail_times
        self.error = error
        self.inserts: list[tuple[str, list[list[Any]]]] = []
        self.calls = 0
        self.disconnects = 0

    def execute(self, query: str, params: Any = None, *, columnar: bool = False, settings: Any = None) -> Any:
        assert columnar
        table = query.split()[2]
        self.calls += 1
        remaining = self.fail_times.get(table, 0) if isinstance(self.fail_times, dict) else self.fail_times
        if remaining:
            if isinstance(self.fail_times, dict):
                self.fail_times[table] = remaining - 1
            else:
                self.fail_times = remaining - 1
            raise self.error or ConnectionError(f"server away ({table})")
        self.inserts.append((query, params))
        return len(params[0])

    def disconnect(self) -> None:
        self.disconnects += 1

    def rows(self, table: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for query, columns in self.inserts:
            if query.split()[2] == table:
                names = query[query.index("(") + 1 : query.index(")")].split(", ")
                out.extend(dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True))
        return out


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class Ceiling:
    """An rng whose uniform(a, b) is b: makes the jitter's upper bound observable."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FakeMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_insert(self, table: str, rows: int, seconds: float) -> None:
        self.calls.append(("insert", table, rows))

    def on_retry(self, table: str) -> None:
        self.calls.append(("retry", table))

    def on_failure(self, table: str, reason: str, in_a_row: int) -> None:
        self.calls.append(("failure", table, reason, in_a_row))


def settings(**overrides: Any) -> Settings:
    values = {"sink_max_rows": 5, "sink_max_retries": 3, "sink_backoff_max_s": 1.0, **overrides}
    return load_settings({}, **values)


def make_sink(client: FakeClient, recorder: Recorder | None = None, metrics: FakeMetrics | None = None,
              **overrides: Any) -> ClickHouseSink:
    recorder = recorder or Recorder()
    return ClickHouseSink(settings(**overrides), lambda: client, metrics, recorder.sleep, rng=Ceiling())


def profile(customer: str, version: int, events: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in TABLES["customer_profiles"].columns:
        if column.type.startswith("Array"):
            row[column.name] = []
        elif column.type.startswith("Nullable"):
            row[column.name] = None
        elif column.type == "String":
            row[column.name] = ""
        else:
            row[column.name] = 0
    row.update(customer_id=customer, version=version, events=events, segment="new")
    return row


def credit(credit_id: str, sharer: str = "a", amount: int = 0) -> dict[str, Any]:
    return {"credit_id": credit_id, "sharer_customer_id": sharer, "referred_customer_id": "b",
            "share_id": "s1", "touch_type": "purchase" if amount else "click",
            "touch_occurred_at_ms": 1_700_000_000_000, "amount_cents": amount}


def daily(customer: str, day_ms: int, version: int) -> dict[str, Any]:
    return {"customer_id": customer, "day": day_ms, "events": version, "clicks": version, "shares": 0,
            "purchases": 0, "support_events": 0, "revenue_cents": 0, "version": version}


# -- coalescing and versions ------------------------------------------------------------------


def test_rows_with_the_same_key_coalesce_to_one() -> None:
    sink = make_sink(FakeClient())
    sink.add("referral_credits", credit("t1", amount=100))
    sink.add("referral_credits", credit("t1", amount=100))  # replay
    sink.add("referral_credits", credit("t2"))
    sink.add("referral_credits", credit("t1", sharer="other"))  # another key: sharer is in it
    assert sink.buffered_rows == 3
    assert sink.coalesced == 1


def test_higher_version_wins_whatever_the_arrival_order() -> None:
    sink = make_sink(FakeClient())
    sink.add("customer_profiles", profile("c1", version=2, events=2))
    sink.add("customer_profiles", profile("c1", version=5, events=5))
    sink.add("customer_profiles", profile("c1", version=3, events=3))  # late, older: ignored
    sink.add("customer_profiles", profile("c2", version=1))
    assert sink.buffered_rows == 2
    [c1] = [r for r in sink.buffered("customer_profiles") if r["customer_id"] == "c1"]
    assert (c1["version"], c1["events"]) == (5, 5)


def test_equal_version_keeps_the_newer_row() -> None:
    sink = make_sink(FakeClient())
    sink.add("customer_profiles", profile("c1", version=4, events=1))
    sink.add("customer_profiles", profile("c1", version=4, events=9))
    assert sink.buffered("customer_profiles")[0]["events"] == 9


def test_unversioned_tables_keep_the_last_row() -> None:
    sink = make_sink(FakeClient())
    sink.add("referral_credits", credit("t1", amount=100))
    sink.add("referral_credits", credit("t1", amount=200))
    assert sink.buffered("referral_credits")[0]["amount_cents"] == 200


def test_times_in_ms_become_driver_values() -> None:
    sink = make_sink(FakeClient())
    day_ms = 1_700_006_399_000  # 2023-11-14 23:59:59 UTC
    sink.add("customer_daily", daily("c1", day_ms, 1))
    sink.add("customer_daily", daily("c1", (day_ms // 86_400_000) * 86_400_000, 2))  # same day: one key
    row = {"minute_start": 1_700_000_040_000, "event_type": "click", "channel": "web",
           "source_partition": 0, "events": 1, "revenue_cents": 0, "version": 1}
    sink.add("minute_totals", row)
    assert [r["day"] for r in sink.buffered("customer_daily")] == [dt.date(2023, 11, 14)]
    assert sink.buffered("minute_totals")[0]["minute_start"] == 1_700_000_040
    assert row["minute_start"] == 1_700_000_040_000  # the caller's dict is not changed


def test_bad_rows_are_refused_at_add() -> None:
    sink = make_sink(FakeClient())
    with pytest.raises(SinkError, match="unknown table"):
        sink.add("nope", {})
    with pytest.raises(SinkError, match=r"missing columns \['amount_cents'\]"):
        sink.add("referral_credits", {k: v for k, v in credit("t1").items() if k != "amount_cents"})
    with pytest.raises(SinkError, match=r"unknown columns \['extra'\]"):
        sink.add("referral_credits", {**credit("t1"), "extra": 1})
    with pytest.raises(SinkError, match=r"customer_daily\.day"):
        sink.add("customer_daily", daily("c1", "yesterday", 1))  # type: ignore[arg-type]
    assert sink.buffered_rows == 0


# -- backpressure -----------------------------------------------------------------------------


def test_full_at_max_rows_and_clear_after_flush() -> None:
    client = FakeClient()
    sink = make_sink(client)  # sink_max_rows = 5
    for i in range(4):
        sink.add("referral_credits", credit(f"t{i}"))
    assert not sink.full
    sink.add("referral_credits", credit("t0"))  # coalesced: still 4
    assert not sink.full
    sink.add("customer_profiles", profile("c1", 1))
    assert sink.full and sink.buffered_rows == 5
    assert asyncio.run(sink.flush()) == 5
    assert not sink.full and sink.buffered_rows == 0
    assert len(client.rows("referral_credits")) == 4 and len(client.rows("customer_profiles")) == 1


def test_one_columnar_insert_per_table() -> None:
    client = FakeClient()
    sink = make_sink(client, sink_max_rows=100)
    for i in range(3):
        sink.add("customer_profiles", profile(f"c{i}", 1))
        sink.add("referral_credits", credit(f"t{i}", amount=i))
    asyncio.run(sink.flush())
    assert [q.split()[2] for q, _ in client.inserts] == ["customer_profiles", "referral_credits"]
    query, columns = client.inserts[1]
    assert query == ("INSERT INTO referral_credits (credit_id, sharer_customer_id, referred_customer_id, "
                     "share_id, touch_type, touch_occurred_at_ms, amount_cents) VALUES")
    assert columns[0] == ["t0", "t1", "t2"] and columns[-1] == [0, 1, 2]
    assert asyncio.run(sink.flush()) == 0 and len(client.inserts) == 2  # nothing left: no insert


# -- retries ----------------------------------------------------------------------------------


def test_retries_with_capped_exponential_backoff_until_written(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient(fail_times=6)
    recorder, metrics = Recorder(), FakeMetrics()
    sink = make_sink(client, recorder, metrics)  # base 0.1 s, cap 1 s, max_retries 3
    sink.add("referral_credits", credit("t1"))
    with caplog.at_level(logging.WARNING, logger="streams.clickhouse.sink"):
        assert asyncio.run(sink.flush()) == 1
    assert recorder.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])  # jitter's upper bounds
    assert sink.retries == 6 and client.calls == 7 and client.disconnects == 6
    assert client.rows("referral_credits") == [credit("t1")]
    assert [c for c in metrics.calls if c[0] == "failure"] == [
        ("failure", "referral_credits", "network", n) for n in range(1, 7)]
    assert metrics.calls.count(("retry", "referral_credits")) == 6
    assert metrics.calls[-1] == ("insert", "referral_credits", 1)
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "referral_credits have failed 4 times in a row (network): the sink is unhealthy" in error
    assert sink.healthy  # written again: healthy


def test_jitter_stays_within_the_ceiling() -> None:
    sink = ClickHouseSink(settings(sink_backoff_max_s=2.0), FakeClient)
    for failures in range(1, 40):
        delay = sink.backoff_delay(failures)
        assert 0.0 <= delay <= min(2.0, 0.1 * 2 ** (failures - 1))


def test_unhealthy_while_failing_past_max_retries_and_rows_stay_buffered() -> None:
    client = FakeClient(fail_times=10**9)
    recorder = Recorder()
    sink = make_sink(client, recorder)
    sink.add("referral_credits", credit("t1"))

    async def scenario() -> None:
        task = asyncio.create_task(sink.flush())
        while len(recorder.sleeps) < 10:
            await asyncio.sleep(0.001)
        assert not task.done()  # never returns success without writing
        assert not sink.healthy
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert sink.buffered_rows == 1 and client.inserts == []


def test_an_error_only_a_person_can_fix_stops_the_flush_with_the_fix_and_keeps_the_rows() -> None:
    missing_column = ServerException("DB::Exception: No such column touch_type in table referral_credits", code=16)
    client = FakeClient(fail_times=1, error=missing_column)
    recorder, metrics = Recorder(), FakeMetrics()
    sink = make_sink(client, recorder, metrics)
    sink.add("referral_credits", credit("t1"))
    with pytest.raises(SinkRejected) as rejected:
        asyncio.run(sink.flush())
    assert rejected.value.table == "referral_credits" and rejected.value.reason == "schema"
    message = str(rejected.value)
    assert message.startswith("ClickHouse refuses inserts into interactions.referral_credits (schema: "
                              "ServerException (code 16): DB::Exception: No such column touch_type")
    assert "run `streams migrate`" in message
    assert recorder.sleeps == [] and sink.retries == 0  # not retried
    assert metrics.calls == [("failure", "referral_credits", "schema", 1)]
    assert sink.buffered_rows == 1 and client.inserts == []


def test_partial_failure_keeps_the_unwritten_tables() -> None:
    client = FakeClient(fail_times={"referral_credits": 10**9})
    recorder = Recorder()
    sink = make_sink(client, recorder, sink_max_rows=100)
    sink.add("customer_profiles", profile("c1", 1))  # flushed first (table order)
    sink.add("referral_credits", credit("t1"))
    sink.add("referral_credits", credit("t2"))

    async def scenario() -> None:
        task = asyncio.create_task(sink.flush())
        while len(recorder.sleeps) < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(client.rows("customer_profiles")) == 1
    assert sink.buffered("customer_profiles") == []
    assert {r["credit_id"] for r in sink.buffered("referral_credits")} == {"t1", "t2"}
    assert sink.buffered_rows == 2
    client.fail_times = {}
    assert asyncio.run(sink.flush()) == 2
    assert sink.buffered_rows == 0


def test_rows_added_during_a_flush_are_kept_for_the_next() -> None:
    client = FakeClient(fail_times=1)
    sink = make_sink(client, sink_max_rows=100)
    sink.add("customer_profiles", profile("c1", 1))

    async def scenario() -> None:
        async def sleep_and_add(seconds: float) -> None:
            # While the first insert is being retried, a newer c1 and a new c2 arrive.
            sink.add("customer_profiles", profile("c1", 2))
            sink.add("customer_profiles", profile("c2", 1))

        sink._sleep = sleep_and_add
        await sink.flush()

    asyncio.run(scenario())
    # The retried insert wrote the batch it started with (c1 v1); c1 v2 and c2 wait.
    assert [(r["customer_id"], r["version"]) for r in client.rows("customer_profiles")] == [("c1", 1)]
    assert sorted((r["customer_id"], r["version"]) for r in sink.buffered("customer_profiles")) == [
        ("c1", 2), ("c2", 1)]
    assert sink.buffered_rows == 2


def test_a_cancelled_flush_merges_its_rows_with_those_added_meanwhile_by_version() -> None:
    client = FakeClient(fail_times=10**9)
    recorder = Recorder()
    sink = make_sink(client, recorder, sink_max_rows=100)
    sink.add("customer_profiles", profile("c1", 5))
    sink.add("customer_profiles", profile("c2", 1))
    sink.add("customer_profiles", profile("c3", 1))

    async def scenario() -> None:
        task = asyncio.create_task(sink.flush())
        while not recorder.sleeps:
            await asyncio.sleep(0.001)
        # While the insert fails: an older c1, a newer c2, a new c4.
        sink.add("customer_profiles", profile("c1", 4))
        sink.add("customer_profiles", profile("c2", 2))
        sink.add("customer_profiles", profile("c4", 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert client.inserts == []
    assert sorted((r["customer_id"], r["version"]) for r in sink.buffered("customer_profiles")) == [
        ("c1", 5), ("c2", 2), ("c3", 1), ("c4", 1)]
    assert sink.buffered_rows == 4
