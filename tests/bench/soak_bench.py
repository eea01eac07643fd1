"""Soak: ``python -m tests.bench.soak_bench [--events N] [--customers N] [--rate R] [--sample-s S]``.

Millions of clean simulated events through one worker, on a fresh pipeline of its own (topics,
consumer group, database, table directory), published at ``--rate`` events/s (0: as fast as
the publisher goes, a backlog) from chunks made as they are needed (``tests.bench.soak_workload``).
Every ``--sample-s`` seconds one line shows, and the run keeps: events published and landed,
the group's lag, the worker's RSS, peak RSS and CPU, the customers it holds, and the freshness
(publish -> visible in ClickHouse, p50 and p99) of the events that landed since the last
sample (``tests.bench.soak_meter``). At the end ClickHouse must hold exactly what was
published (``tests.bench.tally_check``) and the worker must have counted nothing late or
dead-lettered. Written: ``bench-results/soak-<stamp>.json`` (options, machine, samples,
summary, checks) and ``soak-<stamp>.png`` (RSS, lag and freshness against events processed).
See docs/benchmarks.md, "Soak".
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from streams.settings import Settings, load_settings
from tests.bench import soak_chart
from tests.bench.freshness import PacedPublisher
from tests.bench.lag_watch import LagWatch
from tests.bench.long_run import fresh_pipeline, patient
from tests.bench.pipeline_bench import clickhouse
from tests.bench.report import REPO, machine, write_json
from tests.bench.soak_figures import Sample, summarize
from tests.bench.soak_meter import SoakMeter, create_landed_view, progress_line
from tests.bench.soak_workload import WINDOW_MS, ChunkFeeder, simulated
from tests.bench.tally_check import check_landed
from tests.bench.worker_probe import metric, wait_ready
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import bench_name
from tests.conftest import local_environ

POLL_S = 0.2  # freshness polls: an event's latency is overestimated by at most this


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    customers: int
    rate: float
    sample_s: float
    partitions: int
    seed: int
    chunk_events: int
    stall_s: float
    share_retention_ms: int
    keep: bool
    out_dir: Path


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events to publish (10,000,000)")
    parser.add_argument("--customers", type=int, default=100_000,
                        help="simulated customers (100,000: all of them are active within the first ~2M "
                             "events, so memory after that is the test, not the state filling up)")
    parser.add_argument("--rate", type=float, default=4_000.0,
                        help="events/s published (4,000, which one worker sustains on 2 shared cores); "
                             "0: as fast as the publisher goes, a backlog")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (5)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the first chunk; chunk i uses seed + i (7)")
    parser.add_argument("--chunk-events", type=int, default=50_000,
                        help="events per simulated chunk, the most the bench holds at once times three (50,000)")
    parser.add_argument("--stall-s", type=float, default=120.0,
                        help="give up when no event has become visible for this long while some are missing (120)")
    parser.add_argument("--share-retention-ms", type=int, default=Settings().share_retention_ms,
                        help="STREAMS_SHARE_RETENTION_MS of the worker (the default, 30 days, retires no share "
                             "within a run: minutes show the share index's memory staying flat)")
    parser.add_argument("--keep", action="store_true", help="leave the topics, database and table directory behind")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench-results", help="where JSON, PNG and logs go")
    args = parser.parse_args(argv)
    return Options(args.events, args.customers, args.rate, args.sample_s, args.partitions, args.seed,
                   args.chunk_events, args.stall_s, args.share_retention_ms, args.keep, args.out_dir)


class SoakFailed(RuntimeError):
    """The worker exited, or events stopped becoming visible: the samples so far are kept."""


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows under pipes
    for stop in (signal.SIGINT, signal.SIGTERM):  # also when started in the background (SIGINT ignored)
        signal.signal(stop, signal.default_int_handler)  # a stopped run still writes what it sampled
    options = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = load_settings(local_environ(), topic_partitions=options.partitions)
    report: dict[str, Any] = {
        "command": "python -m tests.bench.soak_bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started_utc": stamp, "options": asdict(options), "machine": machine(base),
        "workload": {"event_time_window_min": WINDOW_MS / 60_000}, "failures": [],
    }
    log_dir = options.out_dir / f"soak-{stamp}-logs"
    samples: list[Sample] = []  # filled as the run goes, and kept when it stops early
    latencies: Counter[int] = Counter()  # publish -> visible, ms -> events
    with fresh_pipeline(f"{bench_name()}_soak", options.partitions, log_dir / "state", options.keep) as settings:
        settings = replace(settings, share_retention_ms=options.share_retention_ms)
        create_landed_view(settings)
        worker = WorkerProcess(settings, log_dir / "worker.log")
        worker.start()
        try:
            report["worker_ready_s"] = wait_ready(worker)
            pace = f"at {options.rate:,.0f}/s" if options.rate else "as fast as the publisher goes"
            print(f"worker ready after {report['worker_ready_s']:.1f} s; publishing {options.events:,} events "
                  f"for {options.customers:,} customers {pace}")
            report.update(soak(options, settings, worker, samples, latencies))
        except (SoakFailed, KeyboardInterrupt) as exc:  # what was sampled is still written
            report["failures"].append(str(exc) or "interrupted")
            print(f"FAILED: {report['failures'][-1]}", file=sys.stderr)
        except Exception as exc:  # anything else ends the run as well, and it is written too
            traceback.print_exc()
            report["failures"].append(f"{type(exc).__name__}: {exc}")
        finally:
            worker.stop()
    if samples:
        report["summary"] = summarize(samples, latencies, samples[-1].published, report.get("publish_s"),
                                      report.get("landed_s"))
    report["samples"] = [asdict(s) for s in samples]
    path = options.out_dir / f"soak-{stamp}.json"
    write_json(path, report)
    if samples:
        soak_chart.draw(samples, chart_title(options, report), path.with_suffix(".png"))
    print_summary(report, path)
    return 1 if report["failures"] else 0


def soak(options: Options, settings: Settings, worker: WorkerProcess, samples: list[Sample],
         latencies: Counter[int]) -> dict[str, Any]:
    """Publish, sample into ``samples`` and ``latencies`` until every event is visible, check."""
    feeder = ChunkFeeder(settings, simulated(settings, options.seed, options.customers), options.events,
                         options.chunk_events)
    publisher = PacedPublisher(settings, feeder.messages(), options.rate)
    topics = [*settings.input_topics.values(), settings.referral_index_topic]
    with clickhouse(settings) as client, LagWatch(settings.kafka_bootstrap_servers, settings.app_id, topics,
                                                   settings.topic_partitions, time.monotonic(), 1.0) as lag:
        meter = SoakMeter(client, worker, publisher, feeder.tally, lag, latencies)
        feeder.start()
        publisher.start()
        next_sample = meter.started + options.sample_s
        while True:
            published_all = not publisher.is_alive()  # before the poll, which absorbs its last sends
            meter.poll()
            finished = published_all and not meter.in_flight
            if finished or time.monotonic() >= next_sample:
                samples.append(meter.sample())
                print(progress_line(samples[-1], samples[-2] if len(samples) > 1 else None))
                next_sample += options.sample_s
            if finished:
                break
            raise_if_stuck(options, worker, publisher, meter)
            time.sleep(POLL_S)
        landed_s = meter.last_seen - meter.started
        print(f"all {publisher.sent:,} events visible after {landed_s:,.0f} s; checking ClickHouse against the tally")
    with clickhouse(patient(settings)) as slow_client:
        problems = check_landed(slow_client, feeder.tally)
    problems += [f"worker counted {count:,.0f} {what}" for what, name in
                 (("late events", "streams_late_events_total"), ("dead letters", "streams_dead_letters_total"))
                 if (count := metric(worker, name) or 0)]
    tally = feeder.tally
    return {
        "workload": {"event_time_window_min": WINDOW_MS / 60_000, "events": tally.events,
                     "by_type": dict(tally.by_type), "customers_touched": len(tally.customers),
                     "revenue_cents": tally.revenue_cents},
        "publish_s": publisher.seconds, "landed_s": landed_s, "exact": not problems, "failures": problems,
        "shares_retired": metric(worker, "streams_referral_shares_retired_total"),
    }


def raise_if_stuck(options: Options, worker: WorkerProcess, publisher: PacedPublisher, meter: SoakMeter) -> None:
    if publisher.error is not None:
        raise SoakFailed(f"publishing failed: {publisher.error!r}")
    if not worker.alive():
        raise SoakFailed(f"the worker exited ({worker.returncode}):\n{worker.log_tail()}")
    if meter.in_flight and time.monotonic() - meter.last_seen > options.stall_s:
        raise SoakFailed(f"no event became visible for {options.stall_s:.0f} s with {meter.in_flight:,} missing")


def chart_title(options: Options, report: dict[str, Any]) -> str:
    pace = f"published at {options.rate:,.0f} events/s" if options.rate else "published as a backlog"
    retention = f", shares kept {options.share_retention_ms / 60_000:,.0f} min" \
        if options.share_retention_ms != Settings().share_retention_ms else ""
    return (f"soak: {report.get('workload', {}).get('events', 0):,} events, {options.customers:,} customers, "
            f"{pace}{retention}, one worker, {options.partitions} partitions (commit {report['machine']['commit']})")


def print_summary(report: dict[str, Any], path: Path) -> None:
    summary = report.get("summary")
    if summary:
        print("\nsummary:")
        for key, value in summary.items():
            print(f"  {key:28} {'-' if value is None else f'{value:,.1f}'}")
    verdict = "exact" if report.get("exact") else "FAILED: " + "; ".join(report["failures"])
    print(f"\n{verdict}\nwritten to {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    raise SystemExit(main())
