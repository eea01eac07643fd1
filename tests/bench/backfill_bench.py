"""Backfill beside live traffic: ``python -m tests.bench.backfill_bench [--history N] [--rate R]
[--seconds S] [--import-rate I] [--runs K] [--out-dir D]``.

Each run gets its own topics and database on the local stack and one worker. First, live
freshness without a backfill: ``--rate`` events/s (default 1,000) of live traffic for
``--seconds`` (default 30), each event timed from its publish to its row in ClickHouse
(``tests.bench.freshness``). Then the same live traffic again while ``streams backfill``
imports ``--history`` events (default 100,000 over 90 days, JSON lines) into the same
pipeline: live freshness during the import, the import's own publish rate, and the backfill's
throughput end to end (from the command's start to the last history row in ``events``).
Printed per run and as medians over ``--runs`` (default 3); written to ``--out-dir`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.publisher import event_to_json
from streams.settings import Settings
from streams.tools.simulate import SimulationConfig, generate
from streams.topics import ensure_topics
from tests.bench.freshness import Freshness, clean_messages, measure_freshness
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import bench_name, delete_everything_named, run_settings
from tests.conftest import settings_environ

DAY_MS = 86_400_000


def history_file(path: Path, events: int, customers: int, seed: int) -> int:
    """``events`` clean events over the 90 days before a day ago, as JSON lines; the cut-over."""
    cutover = int(time.time() * 1000) - DAY_MS
    config = SimulationConfig(seed=seed, customers=customers, events=events, start_ms=cutover - 90 * DAY_MS,
                              span_ms=90 * DAY_MS - 3_600_000, out_of_order=0.0, late=0.0, duplicates=0.0,
                              far_future=0.0, malformed=0.0, touch_before_share=0.0)
    lines = [json.dumps(event_to_json(r.event)) for r in generate(config) if r.event is not None]
    path.write_text("\n".join(lines) + "\n")
    return cutover


def history_rows(client: Client, settings: Settings) -> int:
    return int(client.execute("SELECT count() FROM events FINAL WHERE source_topic = %(topic)s",
                              {"topic": settings.backfill_topic})[0][0])


class Import(threading.Thread):
    """``streams backfill`` as a subprocess, and when its last history row landed."""

    def __init__(self, settings: Settings, file: Path, cutover_ms: int, log: Path, max_rate: float) -> None:
        super().__init__(name="backfill", daemon=True)
        self.settings, self.file, self.cutover_ms, self.log = settings, file, cutover_ms, log
        self.max_rate = max_rate
        self.started = self.sent_s = self.landed_s = 0.0
        self.expected = sum(1 for line in file.read_text().splitlines() if line)

    def run(self) -> None:
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            subprocess.run([sys.executable, "-m", "streams.cli", "backfill", str(self.file), "--cutover",
                            str(self.cutover_ms), "--max-rate", str(self.max_rate)],
                           env=settings_environ(self.settings), stdout=out, stderr=subprocess.STDOUT, check=True)
        self.sent_s = time.monotonic() - self.started
        client = connect(self.settings)
        while history_rows(client, self.settings) < self.expected:
            time.sleep(0.2)
        self.landed_s = time.monotonic() - self.started
        client.disconnect()


def one_run(args: argparse.Namespace, run: int, out_dir: Path) -> dict[str, float]:
    name = f"{bench_name()}_bf{run}"
    settings = run_settings(name, 4, out_dir / "state")
    ensure_topics(settings)
    migrate(settings, echo=lambda _: None)
    worker = WorkerProcess(settings, out_dir / f"{name}-worker.log")
    worker.start()
    client = connect(settings)
    try:
        count = int(args.rate * args.seconds)
        measure_freshness(settings, client, clean_messages(settings, run, args.customers, 2_000), args.rate)  # warm-up
        alone = measure_freshness(settings, client, clean_messages(settings, run + 100, args.customers, count),
                                  args.rate)
        file = out_dir / f"{name}-history.jsonl"
        cutover = history_file(file, args.history, args.customers, seed=run + 200)
        live = clean_messages(settings, run + 300, args.customers, count * 5)
        importing = Import(settings, file, cutover, out_dir / f"{name}-backfill.log", args.import_rate)
        importing.start()
        # Live traffic for as long as the import has history left to land (at least --seconds, at most 5 times that).
        beside = measure_freshness(settings, client, live, args.rate, enough=lambda: not importing.is_alive()
                                   and time.monotonic() - importing.started > args.seconds)
        importing.join()
        events = importing.expected
        return {"history_events": events, "backfill_events_s": events / importing.landed_s,
                "backfill_sent_events_s": events / importing.sent_s, "backfill_landed_s": importing.landed_s,
                **prefixed("alone", alone), **prefixed("beside", beside)}
    finally:
        client.disconnect()
        worker.stop()
        if not args.keep:
            delete_everything_named(settings, name)


def prefixed(label: str, result: Freshness) -> dict[str, float]:
    return {f"live_{label}_rate": result.achieved_rate, f"live_{label}_p50_ms": result.p50_ms,
            f"live_{label}_p99_ms": result.p99_ms, f"live_{label}_missing": result.missing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1_000.0, help="live events/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="live traffic per phase")
    parser.add_argument("--import-rate", type=float, default=0.0,
                        help="the import's --max-rate, events/s (0: as fast as it goes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=Path(".bench"))
    parser.add_argument("--keep", action="store_true", help="keep each run's topics and database")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for run in range(args.runs):
        figures = one_run(args, run, args.out_dir)
        print(f"[run {run}] " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)
        runs.append(figures)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print("medians: " + ", ".join(f"{k} {v:,.1f}" for k, v in medians.items()))
    (args.out_dir / "backfill-bench.json").write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
