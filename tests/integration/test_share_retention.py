"""A running worker forgets shares past their retention, and the credits stay the oracle's: a
day of simulated traffic, its second half published as live traffic goes on, until the worker
has retired shares and then all at once, so that later touches find those shares gone."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from streams.clickhouse.migrate import migrate
from streams.settings import Settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimulationConfig, generate, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.exact import wait_for_exact
from tests.support.upstream import RETENTION_MS, publish_records
from tests.support.worker import Worker, wait_until

SHARE_RETENTION_MS = 2 * 3_600_000  # of the simulated day's ingest times
CONFIG = SimulationConfig(seed=43, customers=300, events=6_000, start_ms=recent_day_start_ms())
RETIRED = "streams_referral_shares_retired_total"


def test_shares_past_their_retention_are_forgotten_and_earn_nothing_after(clickhouse_settings: Settings,
                                                                         tmp_path: Path) -> None:
    settings = dataclasses.replace(clickhouse_settings, metrics_port=19152, table_dir=str(tmp_path / "state"),
                                   input_retention_ms=RETENTION_MS, share_retention_ms=SHARE_RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    records = generate(CONFIG)
    truth = expected(records, settings)
    # The retention is what this run tests: it takes credits the default would give.
    kept_longer = dataclasses.replace(settings, share_retention_ms=Settings().share_retention_ms)
    assert len(truth.credits) < len(expected(records, kept_longer).credits)
    half = len(records) // 2
    rest = records[half:]
    chunks = [rest[i:i + 100] for i in range(0, len(rest), 100)]
    worker = Worker(settings, tmp_path / "worker.log")
    publish_records(records[:half], settings, "kafka-python")
    worker.start()
    try:
        wait_until(lambda: worker.metric(settings.metrics_port, "streams_events_processed_total") > 0)
        # The rest as live traffic goes on, a chunk every 2 s, until the index (swept every
        # 30 s) has retired shares: the chunks after that bring touches of shares it forgot.
        while chunks and not worker.metric(settings.metrics_port, RETIRED):
            publish_records(chunks.pop(0), settings, "kafka-python")
            time.sleep(2)
        assert len(chunks) > 5, "no share retired while the traffic went on"
        publish_records([record for chunk in chunks for record in chunk], settings, "kafka-python")
        assert wait_for_exact(settings, truth) == {}
    finally:
        worker.stop()
        print(worker.log_tail(2000))
