"""The outage log rule: the first record of each kind is written, repeats become one line per
condition per interval with their count, and a quiet interval clears the condition."""

from __future__ import annotations

import logging

from streams.runtime.logs import Aggregator, OutageLogFilter, condition_of

ERROR, WARNING, INFO = logging.ERROR, logging.WARNING, logging.INFO


def test_records_are_sorted_into_conditions_by_logger_level_and_message() -> None:
    assert condition_of("aiokafka.conn", ERROR, "Unable connect to node with id %s: %s").name == "kafka"
    assert condition_of("kafka", WARNING, "anything").name == "kafka"
    assert condition_of("kafkaesque", ERROR, "x") is None
    assert condition_of("aiokafka", INFO, "Discovered coordinator %s for group %s").name == "kafka"
    assert condition_of("aiokafka", logging.DEBUG, "Sending request") is None
    assert condition_of("clickhouse_driver.connection", WARNING, "Failed to connect to %s:%s").name == "clickhouse"
    sink_retry = condition_of("streams.clickhouse.sink", WARNING, "ClickHouse insert of %d rows into %s failed")
    assert sink_retry is not None and sink_retry.name == "sink_retries"
    assert condition_of("streams.clickhouse.sink", ERROR, "ClickHouse refuses inserts into %s") is None
    assert condition_of("faust.transport.drivers.aiokafka", ERROR, "No active partitions").name == "faust_consumer"
    assert condition_of("streams.runtime.transport", ERROR, "Stream stopped processing").name == "faust_consumer"


def test_the_first_record_of_each_kind_is_written_and_repeats_are_counted() -> None:
    agg = Aggregator(interval_s=10)
    assert agg.admit("kafka", "Unable connect %s", "Unable connect 1", ERROR, now=0.0)
    assert not agg.admit("kafka", "Unable connect %s", "Unable connect 1", ERROR, now=0.1)
    assert agg.admit("kafka", "Unable to update metadata", "Unable to update metadata", ERROR, now=0.2)
    assert agg.admit("clickhouse", "Failed to connect", "Failed to connect", WARNING, now=0.3)
    assert agg.due(now=5.0) == []  # the interval has not ended
    assert agg.totals == {"kafka": 3, "clickhouse": 1}


def test_one_summary_line_per_condition_per_interval_with_the_count_of_each_kind() -> None:
    agg = Aggregator(interval_s=10)
    agg.admit("kafka", "a %s", "a 0", ERROR, now=0.0)
    agg.admit("kafka", "b", "b", ERROR, now=0.0)
    for i in range(1, 1001):  # ten seconds of an aiokafka reconnect loop
        agg.admit("kafka", "a %s", f"a {i}", ERROR, now=i / 100)
        agg.admit("kafka", "b", "b", WARNING, now=i / 100)
    (line,) = agg.due(now=10.0)
    assert line.level == ERROR
    assert "[kafka]" in line.text and "2,000 more records in the last 10 s" in line.text
    assert "1,000x 'a 1000'" in line.text and "1,000x 'b'" in line.text
    assert agg.due(now=10.5) == []  # counted again from here
    agg.admit("kafka", "b", "b", WARNING, now=11.0)
    assert agg.due(now=19.9) == []
    (line,) = agg.due(now=20.0)
    assert line.level == WARNING and "1 more records in the last 10 s: 1x 'b'" in line.text


def test_a_quiet_interval_writes_the_last_count_and_a_cleared_line_then_a_new_episode_starts() -> None:
    agg = Aggregator(interval_s=10)
    agg.admit("clickhouse", "Failed", "Failed", WARNING, now=0.0)
    agg.admit("clickhouse", "Failed", "Failed", WARNING, now=3.0)
    summary, cleared = agg.due(now=13.0)
    assert "1 more records" in summary.text
    assert cleared.level == INFO
    assert cleared.text == "[clickhouse] cleared: nothing logged for 10 s (2 records over 3 s)"
    assert agg.due(now=30.0) == []
    assert agg.admit("clickhouse", "Failed", "Failed", WARNING, now=31.0)  # a new episode: written again


def test_info_records_join_an_open_episode_but_never_open_one() -> None:
    agg = Aggregator(interval_s=10)
    assert agg.admit("kafka", "Discovered coordinator", "Discovered coordinator", INFO, now=0.0) is None
    assert agg.totals == {}
    assert agg.admit("kafka", "Unable connect", "Unable connect", ERROR, now=1.0)
    assert agg.admit("kafka", "OffsetCommit failed", "OffsetCommit failed", INFO, now=5.0)
    for i in range(300):  # the reconnect after the outage
        assert agg.admit("kafka", "OffsetCommit failed", "OffsetCommit failed", INFO, now=6.0 + i / 100) is False
    (summary, cleared) = agg.due(now=20.0)
    assert summary.level == WARNING and "300x 'OffsetCommit failed'" in summary.text
    assert "(302 records over 8 s)" in cleared.text
    assert agg.admit("kafka", "Discovered coordinator", "Discovered coordinator", INFO, now=21.0) is None


def test_a_condition_without_repeats_clears_without_a_summary() -> None:
    agg = Aggregator(interval_s=10)
    agg.admit("faust_consumer", "No active partitions", "No active partitions", ERROR, now=0.0)
    (cleared,) = agg.due(now=10.0)
    assert "cleared" in cleared.text


def test_the_summary_names_the_commonest_kinds_and_counts_the_rest() -> None:
    agg = Aggregator(interval_s=10)
    for kind, repeats in (("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1)):
        for _ in range(repeats + 1):
            agg.admit("kafka", kind, kind, ERROR, now=1.0)
    (line, _) = agg.due(now=11.0)
    assert line.text.endswith("5x 'a', 4x 'b', 3x 'c', 3x others")


def record(name: str, level: int, msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_the_filter_strips_tracebacks_of_network_errors_only_and_decides_once_per_record() -> None:
    now = [0.0]
    log_filter = OutageLogFilter(Aggregator(interval_s=10), clock=lambda: now[0])
    first = record("clickhouse_driver.connection", WARNING, "Failed to connect to %s:%s", "h", 9000,
                   exc=ConnectionRefusedError(111, "Connection refused"))
    assert log_filter.filter(first)
    assert first.exc_info is None
    assert first.getMessage() == ("[clickhouse] Failed to connect to h:9000 "
                                  "(ConnectionRefusedError: [Errno 111] Connection refused)")
    assert log_filter.filter(first)  # a second handler: same answer, counted once
    repeat = record("clickhouse_driver.connection", WARNING, "Failed to connect to %s:%s", "h", 9000,
                    exc=ConnectionRefusedError(111, "Connection refused"))
    assert not log_filter.filter(repeat)
    assert log_filter.aggregator.totals == {"clickhouse": 2}
    bug = record("aiokafka.consumer", ERROR, "Unexpected error", exc=KeyError("x"))
    assert log_filter.filter(bug)
    assert bug.exc_info is not None  # not a network error: the traceback stays
    other = record("streams.runtime.worker", ERROR, "something else %s", "here")
    assert log_filter.filter(other) and other.getMessage() == "something else here"
    calm = record("aiokafka.consumer", INFO, "Joined group %r (generation %s)", "g", 2)
    assert OutageLogFilter(Aggregator()).filter(calm)
    assert calm.getMessage() == "Joined group 'g' (generation 2)"  # no outage open: as it is


def test_the_filter_writes_one_line_of_a_multi_line_message() -> None:
    log_filter = OutageLogFilter(Aggregator(interval_s=10), clock=lambda: 0.0)
    slow = record("faust.transport.drivers.aiokafka", ERROR, "Stream stopped processing %r.\n\nThere are multiple "
                  "possible explanations for this:\n\n1) ...", "TP")
    assert log_filter.filter(slow)
    assert slow.getMessage() == "[faust_consumer] Stream stopped processing 'TP'."
