"""Throughput against state size: ``python -m tests.bench.state_size_bench [--customers N ...] [--events E]``.

What a worker does per second depends on how many customers it holds (a larger heap for the
garbage collector, more cache misses, fewer hits in its decoded-profile cache), so each size is
measured with every one of its customers in the worker's state. The simulator's Zipf-like
activity touches ~28 % of 100k customers in 200k events, and would need several million events
to touch most of 1M; so, per size N, on a fresh pipeline:

1. *Warm-up*: one click by each of the N customers is published, then a worker builds their N
   profiles (its rate, new customers per second, is reported too) and is stopped (SIGTERM).
2. *Measured*: E clean simulated events over the same N customers (``tests.bench.soak_workload``:
   the busy customers drawn anew every chunk) are published while no worker runs, a backlog.
3. A new worker on the same table directory loads the N customers and processes the backlog,
   alone but for the bench's polling: events/s and its CPU per event from its first new row
   until every event is visible (start-up and the store's load are reported apart), its peak
   RSS, and the customers the measured events touched.

ClickHouse must then hold exactly what was published (``tests.bench.tally_check``). Results go
to stdout as a table and to ``bench-results/state-size-<stamp>.json``. See docs/benchmarks.md,
"State size".
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from streams.settings import Settings, load_settings
from tests.bench.landing import event_rows
from tests.bench.long_run import fresh_pipeline, patient, publish_all
from tests.bench.pipeline_bench import clickhouse
from tests.bench.report import REPO, machine, write_json
from tests.bench.soak_meter import MB
from tests.bench.soak_workload import ChunkFeeder, Tally, one_click_each, simulated
from tests.bench.tally_check import check_landed
from tests.bench.worker_probe import resident_bytes
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import bench_name
from tests.conftest import local_environ

CHUNK_EVENTS = 100_000


@dataclass(frozen=True, slots=True)
class Drained:
    """A worker working through a backlog: seconds since its launch, its CPU at those moments."""

    first_row_s: float
    done_s: float
    cpu_at_first_row_s: float
    cpu_at_done_s: float
    peak_rss_mb: float
    rss_mb: float

    def rate(self, events: int) -> float:
        return events / (self.done_s - self.first_row_s)

    def cpu_us_per_event(self, events: int) -> float:
        return (self.cpu_at_done_s - self.cpu_at_first_row_s) / events * 1e6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.state_size_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="state sizes, customers held (10,000 100,000 1,000,000)")
    parser.add_argument("--events", type=int, default=200_000, help="measured events per size (200,000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the first chunk (7)")
    parser.add_argument("--stall-s", type=float, default=120.0, help="give up when no row lands for this long (120)")
    parser.add_argument("--keep", action="store_true", help="leave topics, databases and table directories behind")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench-results", help="where JSON and logs go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows under pipes
    for stop in (signal.SIGINT, signal.SIGTERM):  # also when started in the background (SIGINT ignored)
        signal.signal(stop, signal.default_int_handler)  # a stopped sweep stops its worker and cleans up
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = load_settings(local_environ(), topic_partitions=args.partitions)
    report: dict[str, Any] = {
        "command": "python -m tests.bench.state_size_bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started_utc": stamp, "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(base), "sizes": [],
    }
    log_dir = args.out_dir / f"state-size-{stamp}-logs"
    path = args.out_dir / f"state-size-{stamp}.json"
    write_json(path, report)
    try:
        for customers in args.customers:
            report["sizes"].append(measure_size(args, customers, log_dir))
            write_json(path, report)  # after every size: a long sweep keeps what it measured
    except KeyboardInterrupt:
        print(f"stopped; the sizes measured so far are in {path}", file=sys.stderr)
        return 1
    print("\n" + table(report["sizes"]))
    print(f"\nwritten to {path}")
    return 0 if all(size["exact"] for size in report["sizes"]) else 1


def measure_size(args: argparse.Namespace, customers: int, log_dir: Path) -> dict[str, Any]:
    label = f"{customers}"
    with fresh_pipeline(f"{bench_name()}_state{label}", args.partitions, log_dir / "state", args.keep) as settings, \
            clickhouse(patient(settings)) as client:  # its last check reads millions of rows with FINAL
        warm = ChunkFeeder(settings, one_click_each(customers), customers, CHUNK_EVENTS)
        print(f"[{label}] warm-up: publishing one click by each of {customers:,} customers")
        publish_all(settings, warm)
        warmed = drain(settings, client, log_dir / f"worker-{label}-warm.log", 0, customers, args.stall_s)
        print(f"[{label}] warm-up landed: {warmed.rate(customers):,.0f} new customers/s, "
              f"peak RSS {warmed.peak_rss_mb:,.0f} MB")
        measured = ChunkFeeder(settings, simulated(settings, args.seed, customers), args.events, CHUNK_EVENTS)
        print(f"[{label}] publishing {args.events:,} simulated events over them, no worker running")
        publish_all(settings, measured)
        done = drain(settings, client, log_dir / f"worker-{label}.log", customers, customers + args.events,
                     args.stall_s)
        both = Tally()
        both.merge(warm.tally)
        both.merge(measured.tally)
        problems = check_landed(client, both)
    result = {
        "customers": customers, "active_customers": len(measured.tally.customers), "events": args.events,
        "warmup_customers_s": warmed.rate(customers), "load_s": done.first_row_s,
        "events_s": done.rate(args.events), "cpu_us_per_event": done.cpu_us_per_event(args.events),
        "peak_rss_mb": done.peak_rss_mb, "rss_mb_at_end": done.rss_mb,
        "warmup_peak_rss_mb": warmed.peak_rss_mb, "exact": not problems, "problems": problems,
    }
    print(f"[{label}] {result['events_s']:,.0f} events/s, {result['cpu_us_per_event']:,.0f} us CPU per event, "
          f"peak RSS {result['peak_rss_mb']:,.0f} MB, {result['active_customers']:,} customers active; "
          + ("exact" if not problems else "NOT EXACT: " + "; ".join(problems)))
    return result


def drain(settings: Settings, client: Client, log: Path, before: int, target: int, stall_s: float) -> Drained:
    """Launch a worker on the backlog, wait until ``events`` holds ``target`` rows, stop it.
    Its first row is the first beyond ``before`` (what earlier phases landed)."""
    worker = WorkerProcess(settings, log)
    worker.start()
    try:
        first = wait_rows(client, worker, before + 1, stall_s, poll_s=0.1)
        cpu_first = worker.cpu_seconds()
        done = wait_rows(client, worker, target, stall_s, poll_s=0.25)
        return Drained(first, done, cpu_first, worker.cpu_seconds(), worker.peak_rss_bytes() / MB,
                       resident_bytes(worker.pid) / MB)
    finally:
        worker.stop()


def wait_rows(client: Client, worker: WorkerProcess, rows: int, stall_s: float, poll_s: float) -> float:
    """Seconds from the worker's launch until ``events`` holds ``rows`` rows (replays would count
    twice until merged; the check afterwards is exact)."""
    last, changed = -1, time.monotonic()
    while (landed := event_rows(client)) < rows:
        if landed != last:
            last, changed = landed, time.monotonic()
        if not worker.alive():
            raise RuntimeError(f"the worker exited ({worker.returncode}):\n{worker.log_tail()}")
        if time.monotonic() - changed > stall_s:
            raise RuntimeError(f"no row landed for {stall_s:.0f} s ({landed:,} of {rows:,})")
        time.sleep(poll_s)
    return time.monotonic() - worker.started_at


def table(sizes: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per state size."""
    lines = ["| customers held | active in the measured events | events/s | CPU per event | peak RSS | "
             "load before the first row | warm-up (new customers/s) | exact |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s['customers']:,} | {s['active_customers']:,} | {s['events_s']:,.0f} | "
              f"{s['cpu_us_per_event']:,.0f} us | {s['peak_rss_mb']:,.0f} MB | {s['load_s']:.1f} s | "
              f"{s['warmup_customers_s']:,.0f} | {'yes' if s['exact'] else 'NO'} |" for s in sizes]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
