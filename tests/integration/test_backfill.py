"""Backfill end to end on the real services: 90 days of history imported with ``streams backfill``
(a JSON-lines file with bad lines, and live events that occurred before the cut-over exported
again) while live traffic flows, a worker SIGKILLed mid-backfill: ClickHouse equals the oracle
over the union of live and imported events; importing the file again changes nothing; a new
consumer group replaying every topic changes nothing; an import SIGKILLed mid-file continues
where it stopped and sends nothing twice."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.core.windows import DAY_MS
from streams.publisher import event_to_json
from streams.settings import PREFIX, Settings
from streams.tools.backfill import after_cutover
from streams.tools.oracle import expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, history, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.clickhouse_rows import read_final_rows
from tests.support.compare import compare_all
from tests.support.exact import wait_for_exact
from tests.support.upstream import RETENTION_MS, publish_records
from tests.support.worker import Worker, wait_until

# The live traffic's simulated ingest times lie two days back, the import's are now: a touch
# waiting for its share would see the referral index's clock jump. A TTL longer than both
# keeps the test about backfill (the TTL has tests of its own).
TTL_MS = 30 * DAY_MS
BAD_LINES = {5: "{not json", 17: json.dumps({"type": "click", "event_id": "x", "customer_id": "null",
                                              "occurred_at": 0, "channel": "web", "page": "/"})}


@dataclasses.dataclass
class Scenario:
    settings: Settings
    live: list[SimRecord]
    imported: list[SimRecord]  # what the import sends: the file's good lines before the cut-over
    file: Path
    worker: Worker
    tmp_path: Path
    live_again: int  # events of the file in ClickHouse from the live topics before the import

    def backfill(self, *args: str, name: str = "backfill") -> Worker:
        """``streams backfill`` of the file as a subprocess (not started)."""
        command = Worker(self.settings, self.tmp_path / f"{name}.log", "backfill", str(self.file), "--cutover",
                         str(self.imported[0].cutover_ms), *args)
        command.env[PREFIX + "PENDING_TOUCH_TTL_MS"] = str(TTL_MS)
        return command

    def truth(self):  # type: ignore[no-untyped-def]
        return expected([*self.live, *self.imported], self.settings)


def history_file(records: list[SimRecord], cutover_ms: int, path: Path, also_live: list[SimRecord]) -> list[SimRecord]:
    """Write the records' events as JSON lines, with bad lines and the events of ``also_live``
    among them; return those the import will send (not those already in from the live topics)."""
    lines = [json.dumps(event_to_json(r.event)) for r in [*records, *also_live] if r.event is not None]
    for number, line in sorted(BAD_LINES.items()):
        lines.insert(number - 1, line)
    path.write_text("\n".join(lines) + "\n")
    return [r for r in records if r.event is not None and not after_cutover(r.event, cutover_ms)]


def scenario(settings: Settings, tmp_path: Path, seed: int, live_events: int, history_events: int,
             exported_again: int = 0) -> Scenario:
    """Live traffic from the cut-over on, 90 days of history before it; the file holds also
    ``exported_again`` events of the first half of the live traffic that occurred before the
    cut-over (late ones)."""
    cutover = recent_day_start_ms()
    live = generate(SimulationConfig(seed=seed, customers=300, events=live_events, start_ms=cutover,
                                     anonymous_visits=0.2, sentinel_ids=0.005))
    past = history(SimulationConfig(seed=seed + 1, customers=300, events=history_events, span_ms=90 * DAY_MS,
                                    anonymous_visits=0.2, malformed=0.0),
                   cutover, publish_from_ms=cutover, publish_span_ms=0)
    file = tmp_path / "history.jsonl"
    early = [r for r in live[:len(live) // 2]
             if r.event is not None and r.malformed_reason is None and r.event.occurred_at_ms < cutover]
    accepted = {(a.event.actor_id, a.event.event_id) for a in expected(live[:len(live) // 2], settings).accepted}
    again = [r for r in early if (r.event.actor_id, r.event.event_id) in accepted][:exported_again]  # type: ignore[union-attr]
    imported = history_file(past, cutover, file, again)
    worker = Worker(settings, tmp_path / "worker.log")
    worker.env.update({PREFIX + "PENDING_TOUCH_TTL_MS": str(TTL_MS), PREFIX + "BATCH_MAX_EVENTS": "500"})
    return Scenario(settings, live, imported, file, worker, tmp_path, len(again))


@pytest.fixture()
def prepared(clickhouse_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = dataclasses.replace(clickhouse_settings, metrics_port=24250, table_dir=str(tmp_path / "state"),
                                   broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS,
                                   pending_touch_ttl_ms=TTL_MS)
    ensure_topics(settings)
    migrate(settings)
    yield settings


def backfill_records(settings: Settings) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        partitions = [TopicPartition(settings.backfill_topic, p) for p in range(settings.topic_partitions)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_history_beside_live_traffic_with_a_sigkill_an_import_twice_and_a_replay_stays_exact(
        prepared: Settings, tmp_path: Path) -> None:
    s = scenario(prepared, tmp_path, seed=42, live_events=3_000, history_events=6_000, exported_again=20)
    truth = s.truth()
    assert sum(1 for a in truth.accepted if a.history) > 5_000
    half = len(s.live) // 2
    publish_records(s.live[:half], s.settings)
    s.worker.start()
    # The import starts once the first half is in ClickHouse: its late events are "already live".
    first_half = expected(s.live[:half], s.settings)
    assert wait_for_exact(s.settings, first_half, timeout_s=120) == {}
    importing = s.backfill("--max-rate", "3000")
    try:
        importing.start()
        wait_until(lambda: backfill_records(s.settings) >= len(s.imported) // 3, poll_s=0.05)
        s.worker.kill()  # mid-backfill
        publish_records(s.live[half:], s.settings)  # live traffic goes on meanwhile
        s.worker.start()
        code, log = importing.process.wait(timeout=120), importing.log_path.read_text()  # type: ignore[union-attr]
        assert code == 1, log  # bad lines: reported, the rest imported
        assert "item 5: invalid JSON" in log and "item 17: " in log and "sentinel_id" in log
        assert s.live_again > 0 and f"and {s.live_again} already in ClickHouse from the live topics" in log
        assert wait_for_exact(s.settings, truth, timeout_s=180) == {}

        again = s.backfill(name="again")
        code, log = again.run_until_exit(timeout_s=120)
        assert code == 0 and "already imported" in log, log
        time.sleep(3)  # past a sink flush: nothing new may land
        assert compare_all(truth, read_final_rows(connect(s.settings))) == {}
    finally:
        importing.stop()
        s.worker.stop()
        print(s.worker.log_tail(4000))

    replay = Worker(dataclasses.replace(s.settings, app_id=s.settings.app_id + "-replay"), tmp_path / "replay.log")
    replay.env[PREFIX + "PENDING_TOUCH_TTL_MS"] = str(TTL_MS)
    replay.start()
    try:
        inputs = len(s.live) + len(s.imported)
        wait_until(lambda: replay.metric(s.settings.metrics_port, "streams_events_consumed_total") >= inputs)
        time.sleep(3)  # past a sink flush
        assert compare_all(truth, read_final_rows(connect(s.settings))) == {}
    finally:
        replay.stop()
        print(replay.log_tail(3000))


def test_an_import_sigkilled_mid_file_continues_where_it_stopped(prepared: Settings, tmp_path: Path) -> None:
    s = scenario(prepared, tmp_path, seed=7, live_events=500, history_events=5_000)
    publish_records(s.live, s.settings)
    s.worker.start()
    first = s.backfill("--max-rate", "1000", name="first")
    try:
        first.start()
        wait_until(lambda: backfill_records(s.settings) >= 2_500, poll_s=0.05)
        first.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        first.process.wait()  # type: ignore[union-attr]
        code, log = s.backfill(name="second").run_until_exit(timeout_s=120)
        assert code == 1 and "continued after item" in log, log
        resumed_from = int(log.split("continued after item ", 1)[1].split()[0].rstrip(","))
        assert resumed_from >= 2_000
        assert backfill_records(s.settings) == len(s.imported)  # nothing sent twice
        assert wait_for_exact(s.settings, s.truth(), timeout_s=180) == {}
    finally:
        s.worker.stop()
        print(s.worker.log_tail(4000))
