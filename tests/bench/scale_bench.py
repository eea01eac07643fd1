"""Scaling and skew benchmark: ``python -m tests.bench.scale_bench [--workers 2] [--runs 3]``.

Three phases, each on fresh topics, consumer group and database per run, with the workload
published before the workers start (a backlog, as in ``python -m tests.bench``):

- *uniform*: the bench's usual traffic, processed by 1 and then N workers of one consumer group
  (the order alternates between runs); T(1), T(N), E(N) = T(N) / (N * T(1)), each worker's CPU
  and the events per core used.
- *skewed*: the same with a hot customer (``--hot-customer``, 5 % of events) and a viral share
  (``--viral-share``, about 20 % of touches): per-partition load, lag over time and the time each
  partition was drained, to show whether the hot partition holds the others back.
- *one-key*: every simulated customer pick is one customer, one worker: the events/s one key's
  partition takes.

Every run must end exactly equal to the oracle (``tests.bench.landing``). Lag comes from Kafka:
committed offsets against log end offsets, every 0.5 s. Results go to stdout and to
``bench-results/scale-<timestamp>.json``. See docs/benchmarks.md, "Scaling and skew".
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.settings import Settings, load_settings
from streams.tools.simulate import SimulationConfig, recent_day_start_ms
from tests.bench.lag_watch import LagWatch
from tests.bench.landing import PipelineFailed, wait_until_landed
from tests.bench.pipeline_bench import clickhouse
from tests.bench.report import REPO, machine, write_json
from tests.bench.scaling import efficiency, events_per_core, hot_versus_rest, partition_loads
from tests.bench.worker_process import WorkerGroup
from tests.bench.workload import Workload, bench_name, build_workload, published_run
from tests.conftest import local_environ

PHASES = ("uniform", "skewed", "one-key")


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    customers: int
    one_key_events: int
    runs: int
    workers: int
    partitions: int
    seed: int
    hot_customer: float
    viral_share: float
    phases: tuple[str, ...]
    timeout_s: float
    keep: bool
    out_dir: Path


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scale_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="well-formed events per workload (100,000)")
    parser.add_argument("--customers", type=int, default=50_000, help="simulated customers (50,000)")
    parser.add_argument("--one-key-events", type=int, default=30_000, help="events of the one-key phase (30,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per phase and worker count; medians (3)")
    parser.add_argument("--workers", type=int, default=2, help="N: compared with 1 worker (2)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (7)")
    parser.add_argument("--hot-customer", type=float, default=0.05, help="skewed: share of events of one customer")
    parser.add_argument("--viral-share", type=float, default=0.2, help="skewed: share of touches of one share")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="phases to run (all)")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for a run to land, s (600)")
    parser.add_argument("--keep", action="store_true", help="leave the runs' topics and databases behind")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench-results", help="where JSON and logs go")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (it is compared with one worker)")
    return Options(args.events, args.customers, args.one_key_events, args.runs, args.workers, args.partitions,
                   args.seed, args.hot_customer, args.viral_share, tuple(args.phases), args.timeout, args.keep,
                   args.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = load_settings(local_environ(), topic_partitions=options.partitions)
    name, log_dir = bench_name(), options.out_dir / f"scale-{stamp}-logs"
    report: dict[str, Any] = {
        "command": "python -m tests.bench.scale_bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started_utc": stamp, "options": asdict(options), "machine": machine(base), "phases": {}, "failures": [],
    }
    plans = {
        "uniform": ({}, options.events, (1, options.workers)),
        "skewed": ({"hot_customer": options.hot_customer, "viral_share": options.viral_share}, options.events,
                   (1, options.workers)),
        "one-key": ({"hot_customer": 1.0}, options.one_key_events, (1,)),
    }
    for phase in options.phases:
        skew, events, counts = plans[phase]
        config = SimulationConfig.for_settings(base, seed=options.seed, customers=options.customers, events=events,
                                               start_ms=recent_day_start_ms(), span_ms=86_400_000, **skew)
        print(f"[{phase}] generating {events:,} events for {options.customers:,} customers and the oracle's answer ...")
        workload = build_workload(config, base)
        runs = measure_phase(options, f"{name}_{phase.replace('-', '')}", workload, counts, log_dir,
                             report["failures"])
        report["phases"][phase] = {"workload": skew_summary(workload), "runs": runs,
                                   "summary": summarize(runs, options.workers)}
    path = options.out_dir / f"scale-{stamp}.json"
    write_json(path, report)
    for phase, result in report["phases"].items():
        print_phase(phase, result)
    print(f"\nwritten to {path}")
    for failure in report["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if report["failures"] else 0


def measure_phase(options: Options, name: str, workload: Workload, counts: Sequence[int], log_dir: Path,
                  failures: list[str]) -> list[dict[str, Any]]:
    """Every worker count once per run; the order alternates so that drift hits both alike."""
    runs: list[dict[str, Any]] = []
    for run in range(1, options.runs + 1):
        for workers in counts if run % 2 else tuple(reversed(counts)):
            label = f"{name}_r{run}w{workers}"
            try:
                runs.append(timed_run(options, label, workload, workers, log_dir))
            except RunInexact as exc:
                runs.append(exc.result)
                failures.append(f"{label}: {exc}")
            except PipelineFailed as exc:
                failures.append(f"{label}: {exc}")
                print(f"[{label}] FAILED: {exc}", file=sys.stderr)
    return runs


def timed_run(options: Options, label: str, workload: Workload, workers: int, log_dir: Path) -> dict[str, Any]:
    """One run: publish, launch ``workers`` workers together, time them to exact, watch the lag.

    A run whose rows settled inexact is kept, marked, with the time they settled: its load and
    lag are still what happened. A worker that died or a timeout raises ``PipelineFailed``."""
    inexact: PipelineFailed | None = None
    with published_run(label, workload, options.partitions, log_dir / "state", options.keep) as (settings, records), \
            clickhouse(settings) as client:
        group = WorkerGroup(settings, workers, log_dir, label)
        group.start()
        try:
            with watch(settings, list(settings.input_topics.values()), group.started_at) as inputs, \
                    watch(settings, [settings.referral_index_topic], group.started_at) as index:
                try:
                    landing = wait_until_landed(client, workload.truth, group, options.timeout_s)
                    wall_s, first_row_s = landing.done_s, landing.first_row_s
                except PipelineFailed as exc:
                    if not exc.settled_s:
                        raise
                    inexact, wall_s, first_row_s = exc, exc.settled_s, None
                cpu = group.cpu_seconds()  # inexact: includes the idle wait after the rows settled
        finally:
            group.stop()
    loads = partition_loads(inputs.end_offsets, inputs.samples)
    result = {
        "workers": workers, "records": records, "exact": inexact is None, "wall_s": wall_s,
        "events_s": records / wall_s, "cpu_s": cpu, "events_per_core": events_per_core(records, sum(cpu)),
        "cores_used": sum(cpu) / wall_s,
        "input_partitions": [asdict(load) for load in loads], "hot": hot_versus_rest(loads),
        "index_partitions": [asdict(load) for load in partition_loads(index.end_offsets, index.samples)],
        "input_lag": [(s.at_s, dict(s.lag)) for s in inputs.samples],
    }
    if first_row_s is not None:
        result.update(first_row_s=first_row_s, steady_events_s=records / (wall_s - first_row_s))
    verdict = "exact" if inexact is None else "NOT EXACT, rows settled"
    print(f"[{label}] {verdict} after {wall_s:.1f} s: {result['events_s']:,.0f} events/s, "
          f"CPU {' + '.join(f'{c:.1f}' for c in cpu)} s, {result['events_per_core']:,.0f} events per core-second")
    if inexact is not None:
        raise RunInexact(result, inexact)
    return result


class RunInexact(Exception):
    """A run whose rows settled short of the oracle: its figures, and why."""

    def __init__(self, result: dict[str, Any], cause: PipelineFailed) -> None:
        super().__init__(str(cause))
        self.result = result


def watch(settings: Settings, topics: Sequence[str], started_at: float) -> LagWatch:
    return LagWatch(settings.kafka_bootstrap_servers, settings.app_id, topics, settings.topic_partitions,
                    started_at)


def skew_summary(workload: Workload) -> dict[str, Any]:
    """How concentrated the workload is: the top customer's and the top share's parts."""
    events = [a.event for a in workload.truth.accepted]
    customers = Counter(e.customer_id for e in events)
    touches = Counter(share for e in events if (share := getattr(e, "referrer_share_id", None)))
    top_customer, top_events = customers.most_common(1)[0]
    summary: dict[str, Any] = {"records": len(workload.records), "accepted": len(events),
                               "top_customer": top_customer, "top_customer_share": top_events / len(events)}
    if touches:
        top_share, top_touches = touches.most_common(1)[0]
        summary.update(touches=touches.total(), top_share=top_share, top_share_touches=top_touches / touches.total())
    return summary


def summarize(runs: Sequence[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Medians per worker count, and E(N) both per pair of runs (median) and from the medians."""
    by_count: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_count.setdefault(run["workers"], []).append(run)
    summary: dict[str, Any] = {}
    for count, group in sorted(by_count.items()):
        summary[f"w{count}"] = {key: statistics.median(r[key] for r in group)
                                for key in ("events_s", "wall_s", "events_per_core", "cores_used")}
        summary[f"w{count}"].update(runs=len(group), exact=sum(1 for r in group if r["exact"]))
        drains = [[p["drained_s"] for p in r["input_partitions"]] for r in group]
        if all(None not in d for d in drains):
            summary[f"w{count}"]["drained_s"] = [statistics.median(col) for col in zip(*drains, strict=True)]
    singles, many = by_count.get(1, []), by_count.get(workers, [])
    if singles and many:
        pairs = [efficiency(one["events_s"], n["events_s"], workers) for one, n in zip(singles, many, strict=False)]
        summary["efficiency_per_run_median"] = statistics.median(pairs)
        summary["efficiency_of_medians"] = efficiency(summary["w1"]["events_s"], summary[f"w{workers}"]["events_s"],
                                                      workers)
    return summary


def print_phase(phase: str, result: dict[str, Any]) -> None:
    summary, workload = result["summary"], result["workload"]
    print(f"\n== {phase}: top customer {workload['top_customer_share']:.1%} of accepted events"
          + (f", top share {workload['top_share_touches']:.1%} of touches" if "top_share_touches" in workload else ""))
    print("| workers | runs (exact) | launch -> done events/s | cores used | events per core-second |")
    print("|---|---|---|---|---|")
    for key, figures in summary.items():
        if key.startswith("w"):
            print(f"| {key[1:]} | {figures['runs']} ({figures['exact']}) | {figures['events_s']:,.0f} "
                  f"| {figures['cores_used']:.2f} | {figures['events_per_core']:,.0f} |")
    if "efficiency_of_medians" in summary:
        print(f"E(N) from the medians {summary['efficiency_of_medians']:.2f}, "
              f"median of per-run pairs {summary['efficiency_per_run_median']:.2f}")
    for run in result["runs"]:
        cells = ", ".join(f"p{p['partition']} {p['records']:,} rec ({p['share']:.0%}) peak lag {p['peak_lag']:,} "
                          f"drained {p['drained_s'] or 0:.1f} s" for p in run["input_partitions"])
        print(f"  {run['workers']} worker(s), {run['wall_s']:.1f} s: {cells}")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows under pipes
    raise SystemExit(main())
