"""Restart and rebalance pauses: ``python -m tests.bench.restart_bench [--customers N ...] [--stores URL ...]``.

Per table store and state size, on fresh topics, consumer group and database: one click for
each of N customers is published and a worker builds their state (N profiles); then, in turn,

- *sigterm*: the worker is stopped with SIGTERM and a new one launched at once (same table
  directory: a restarted process);
- *sigkill*: the same with SIGKILL (the group waits for the dead member's session timeout).

At the signal a probe of new clicks, spread over every partition, is published; the *pause* is
the time until the new worker has processed all of the probe
(``streams_events_processed_total``). Each figure is the median over ``--runs``. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.clickhouse.migrate import migrate
from streams.events import Click
from streams.publisher import Publisher
from streams.settings import Settings, load_settings
from streams.topics import ensure_topics
from tests.bench.report import REPO
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import bench_name, delete_everything_named, run_settings
from tests.conftest import local_environ

PROBE_EVENTS = 200


def clicks(prefix: str, count: int, now_ms: int) -> list[Click]:
    return [Click(event_id=f"{prefix}-{i}", customer_id=f"{prefix}-{i}", occurred_at_ms=now_ms - 60_000,
                  channel="web", session_id=None, page="/", product_id=None, referrer_share_id=None)
            for i in range(count)]


def publish(settings: Settings, events: Sequence[Click]) -> None:
    with Publisher(settings) as publisher:
        for event in events:
            publisher.publish(event)


def processed(worker: WorkerProcess) -> float:
    port = worker.env["STREAMS_METRICS_PORT"]
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0  # not listening yet
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("streams_events_processed_total"))


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(poll_s)


class Scenario:
    """One store, one state size: workers on one run's topics, table directories and logs."""

    def __init__(self, settings: Settings, log_dir: Path, timeout_s: float) -> None:
        self.settings, self.log_dir, self.timeout_s = settings, log_dir, timeout_s
        self.launched = 0

    def launch(self) -> WorkerProcess:
        self.launched += 1
        worker = WorkerProcess(self.settings, self.log_dir / f"worker-{self.launched}.log")
        worker.start()
        return worker

    def probe(self, label: str, workers: Sequence[WorkerProcess], started: float) -> float:
        """Publish the probe; seconds from ``started`` until ``workers`` processed all of it."""
        before = [processed(w) for w in workers]
        publish(self.settings, clicks(f"probe-{label}", PROBE_EVENTS, int(time.time() * 1000)))
        wait_for(lambda: sum(processed(w) for w in workers) - sum(before) >= PROBE_EVENTS,
                 self.timeout_s, f"the {label} probe")
        return time.monotonic() - started

    def restart(self, worker: WorkerProcess, how: signal.Signals) -> tuple[WorkerProcess, float]:
        started = time.monotonic()
        worker.stop(how)
        new = self.launch()
        # A new process counts from zero; the probe is all it processes (the old one committed).
        return new, self.probe(how.name.lower(), [new], started)


def measure(store: str, customers: int, args: argparse.Namespace, base_dir: Path) -> dict[str, float]:
    name = f"{bench_name()}_{store.split(':')[0]}_{customers}"
    settings = dataclasses.replace(run_settings(name, args.partitions, base_dir / "state"), store=store)
    scenario = Scenario(settings, base_dir / f"{name}-logs", args.timeout)
    ensure_topics(settings)
    migrate(settings, echo=lambda _: None)
    workers: list[WorkerProcess] = []
    try:
        print(f"[{store} {customers:,}] publishing one click per customer")
        publish(settings, clicks("c", customers, int(time.time() * 1000)))
        started = time.monotonic()
        workers.append(scenario.launch())
        wait_for(lambda: processed(workers[0]) >= customers, args.timeout, "the state to be built", poll_s=1)
        figures = {"build_s": time.monotonic() - started}
        time.sleep(3)  # past a commit: the restarted worker processes only the probe
        for how in (signal.SIGTERM, signal.SIGKILL):
            worker, figures[how.name.lower() + "_s"] = scenario.restart(workers.pop(), how)
            workers.append(worker)
            print(f"[{store} {customers:,}] {how.name}: {figures[how.name.lower() + '_s']:.1f} s")
            time.sleep(3)
        return figures
    finally:
        for worker in workers:
            worker.stop()
        delete_everything_named(settings, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.restart_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="customers of state (100000 1000000)")
    parser.add_argument("--stores", nargs="+", default=["rocksdb://", "memory://"], help="table stores")
    parser.add_argument("--runs", type=int, default=1, help="runs per store and size; figures are medians (1)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one step, s (900)")
    args = parser.parse_args(argv)
    base_dir = REPO / "bench-results" / f"restart-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    load_settings(local_environ())  # fail early on bad settings
    rows = []
    for customers in args.customers:
        for store in args.stores:
            runs = [measure(store, customers, args, base_dir) for _ in range(args.runs)]
            rows.append((store, customers, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    print(f"\nmedians over {args.runs} run(s), {PROBE_EVENTS} probe events; seconds; logs in {base_dir}")
    print("| store | customers | build state | SIGTERM -> probe processed | SIGKILL -> probe processed |\n"
          "|---|---|---|---|---|")
    for store, customers, f in rows:
        print(f"| `{store}` | {customers:,} | {f['build_s']:.1f} | {f['sigterm_s']:.1f} | {f['sigkill_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise SystemExit(main())
