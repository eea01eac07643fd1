"""End-to-end pipeline benchmark (issue 7): ``python -m tests.bench [--quick] [--profile]``.

One fixed simulated workload is generated and its exact outcome computed by the oracle. Each
run then gets fresh topics, consumer group and database, publishes the workload, measures the
ceilings (raw consume, decode, ClickHouse insert) on it, launches a fresh ``streams worker``
and times it until ClickHouse holds exactly the oracle's answer (a run that is not exact
fails: a fast wrong answer is not a result), runs a Quix Streams peer on the same topics
(tests/bench/quix_peer.py), then measures freshness on the caught-up worker.
Figures are medians over the runs; the table is printed and everything is written to
``bench-results/<timestamp>.json``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.core.events import EventType
from streams.settings import Settings, load_settings
from streams.tools.simulate import SimulationConfig, recent_day_start_ms
from tests.bench import ceilings, pyspy
from tests.bench.freshness import clean_messages, measure_freshness
from tests.bench.landing import Landing, PipelineFailed, wait_until_landed
from tests.bench.quix_peer import PeerFailed, oracle_differences, pinned_versions, run_peer
from tests.bench.report import REPO, add_ratios, machine, medians, table, write_json
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import (
    Workload,
    bench_name,
    build_workload,
    published_run,
)
from tests.conftest import local_environ

FULL = {"events": 200_000, "customers": 100_000, "runs": 3, "freshness_s": 30.0}
QUICK = {"events": 20_000, "customers": 10_000, "runs": 1, "freshness_s": 10.0}


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    customers: int
    runs: int
    partitions: int
    seed: int
    span_hours: float
    anonymous_visits: float
    freshness_s: float
    freshness_rate: float | None
    timeout_s: float
    profile: bool
    peer: bool
    keep: bool
    out_dir: Path


@dataclass(slots=True)
class Bench:
    """What every run shares: options, the base name of its Kafka/ClickHouse objects, workload."""

    options: Options
    name: str
    workload: Workload
    log_dir: Path


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help=f"well-formed events in the workload ({FULL['events']:,})")
    parser.add_argument("--customers", type=int, help=f"simulated customers ({FULL['customers']:,})")
    parser.add_argument("--runs", type=int, help=f"measured runs; figures are their medians ({FULL['runs']})")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (7)")
    parser.add_argument("--span-hours", type=float, default=24.0, help="event time the workload spans, h (24)")
    parser.add_argument("--anonymous-visits", type=float, default=0.0,
                        help="share of visits made anonymously, each device identified once (identity "
                             "traffic, docs/benchmarks.md); 0.2 makes about one event in five anonymous (0)")
    parser.add_argument("--freshness-s", type=float, help=f"seconds of paced publishing ({FULL['freshness_s']:.0f})")
    parser.add_argument("--freshness-rate", type=float,
                        help="events/s during the freshness phase (default: half the run's steady rate)")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for a run to land, s (600)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run of 20k events, 10 s of freshness (explicit flags still win)")
    parser.add_argument("--profile", action="store_true",
                        help="one extra, unmeasured run with py-spy sampling the worker")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip the Quix Streams peer (quicker local iterations)")
    parser.add_argument("--keep", action="store_true", help="leave the runs' topics and databases behind")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench-results", help="where JSON and logs go")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    chosen = {key: preset[key] if getattr(args, key) is None else getattr(args, key) for key in preset}
    return Options(events=int(chosen["events"]), customers=int(chosen["customers"]), runs=int(chosen["runs"]),
                   partitions=args.partitions, seed=args.seed, span_hours=args.span_hours,
                   anonymous_visits=args.anonymous_visits,
                   freshness_s=float(chosen["freshness_s"]),
                   freshness_rate=args.freshness_rate, timeout_s=args.timeout, profile=args.profile,
                   peer=args.peer, keep=args.keep, out_dir=args.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = load_settings(local_environ(), topic_partitions=options.partitions)
    config = SimulationConfig.for_settings(base, seed=options.seed, customers=options.customers,
                                           events=options.events, start_ms=recent_day_start_ms(),
                                           span_ms=int(options.span_hours * 3_600_000),
                                           anonymous_visits=options.anonymous_visits)
    measured_on = machine(base)  # before the runs: the work tree may change while they go
    if options.peer:
        measured_on["quix_peer"] = pinned_versions()
    print(f"generating {options.events:,} events for {options.customers:,} customers and the oracle's answer ...")
    bench = Bench(options, bench_name(), build_workload(config, base), options.out_dir / f"{stamp}-logs")
    runs: list[dict[str, float]] = []
    failures: list[str] = []
    for run in range(1, options.runs + 1):
        figures: dict[str, float] = {}
        runs.append(figures)
        try:
            measured_run(bench, run, figures)
        except PipelineFailed as exc:
            failures.append(f"run {run}: {exc}")
            print(f"run {run} FAILED: {exc}", file=sys.stderr)
    profile = profiled_run(bench) if options.profile else None
    median = medians(runs)
    report = {
        "command": "python -m tests.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started_utc": stamp, "options": asdict(options), "machine": measured_on,
        "workload": workload_summary(bench.workload), "runs": runs, "median": median,
        "failures": failures, "profile": profile,
    }
    path = options.out_dir / f"{stamp}.json"
    write_json(path, report)
    exact = sum(1 for r in runs if r.get("exact"))
    print(f"\n{exact} of {options.runs} runs exact; medians (pipeline figures over exact runs only) and runs:\n")
    print(table(runs, median))
    if profile:
        print_profile(profile)
    if "pipeline_to_peer" in median:
        print(f"\nours {median['pipeline_events_s']:,.0f} events/s, Quix Streams peer {median['peer_events_s']:,.0f} "
              f"events/s, ratio {median['pipeline_to_peer']:.2f} (medians)")
    print(f"\nwritten to {path}")
    return 1 if failures or any(r.get("freshness_missing") or r.get("peer_failed") for r in runs) else 0


def workload_summary(workload: Workload) -> dict[str, int]:
    truth = workload.truth
    return {"records": len(workload.records), "accepted": len(truth.accepted),
            "dead_letters": len(truth.dead_letters), "duplicates": truth.duplicate_count,
            "active_customers": len(truth.profiles), "referral_credits": len(truth.credits)}


def prepared_run(bench: Bench, label: str) -> contextlib.AbstractContextManager[tuple[Settings, int]]:
    """Topics and database of one run with the workload published; deleted afterwards."""
    return published_run(f"{bench.name}_{label}", bench.workload, bench.options.partitions,
                         bench.log_dir / "state", bench.options.keep)


@contextlib.contextmanager
def clickhouse(settings: Settings) -> Iterator[Client]:
    client = connect(settings)
    try:
        yield client
    finally:
        client.disconnect()


@contextlib.contextmanager
def running_worker(bench: Bench, settings: Settings, label: str) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(settings, bench.log_dir / f"worker-{label}.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def measured_run(bench: Bench, run: int, figures: dict[str, float]) -> None:
    """Fills ``figures`` as it goes, so a failed run still reports its ceilings."""
    label = f"r{run}"
    figures["exact"] = 0
    with prepared_run(bench, label) as (settings, records):
        figures.update(measure_ceilings(bench, settings, records))
        print(f"[{label}] ceilings: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items() if k != "exact"))
        with clickhouse(settings) as client, running_worker(bench, settings, label) as worker:
            startup_cpu: list[float] = []
            try:
                landing = wait_until_landed(client, bench.workload.truth, worker, bench.options.timeout_s,
                                            on_first_row=lambda: startup_cpu.append(worker.cpu_seconds()))
            except PipelineFailed as exc:
                if exc.settled_s:
                    figures["inexact_settled_s"] = exc.settled_s
                    figures["inexact_records_s"] = records / exc.settled_s
                raise
            figures.update(pipeline_figures(worker, landing, records, startup_cpu[0]))
            print(f"[{label}] exact after {landing.done_s:.1f} s: {figures['pipeline_events_s']:,.0f} events/s "
                  f"({figures['steady_events_s']:,.0f} after the first row)")
            if bench.options.peer:
                figures.update(peer_figures(bench, settings, label, worker))
            figures.update(freshness_figures(bench, settings, client, run, figures["steady_events_s"], worker))
    add_ratios(figures)


def measure_ceilings(bench: Bench, settings: Settings, records: int) -> dict[str, float]:
    workload = bench.workload
    return {
        "consume_msgs_s": ceilings.consume_rate(settings, records),
        "decode_events_s": ceilings.decode_rate(settings, workload.values),
        "insert_rows_s": ceilings.insert_rate(settings, workload.truth.accepted),
    }


def pipeline_figures(worker: WorkerProcess, landing: Landing, records: int, startup_cpu_s: float) -> dict[str, float]:
    """Rates over input records (dead letters and duplicates included: the worker reads them all)."""
    cpu_s = worker.cpu_seconds()  # sampled at "exact", before the freshness phase adds work
    return {
        "exact": 1,
        "startup_cpu_s": startup_cpu_s,
        "pipeline_events_s": records / landing.done_s,
        "steady_events_s": records / (landing.done_s - landing.first_row_s),
        "startup_s": landing.first_row_s,
        "wall_s": landing.done_s,
        "cpu_us_per_event": cpu_s / records * 1e6,
        "peak_rss_mb": worker.peak_rss_bytes() / 2**20,
        "compare_attempts": landing.compare_attempts,
    }


def peer_figures(bench: Bench, settings: Settings, label: str, worker: WorkerProcess) -> dict[str, float]:
    """The Quix Streams peer on the run's interaction topics, while the worker, caught up, idles
    (its CPU meanwhile is reported); a failed peer is reported and the run goes on."""
    kinds = [EventType.CLICK, EventType.SHARE, EventType.PURCHASE, EventType.SUPPORT]
    records = sum(1 for r in bench.workload.records if r.topic_type in kinds)
    worker_cpu_s = worker.cpu_seconds()
    try:
        peer = run_peer(settings, [settings.input_topics[kind] for kind in kinds], records,
                        bench.log_dir / f"quix-peer-{label}.log", bench.options.timeout_s, bench.options.keep)
    except PeerFailed as exc:
        print(f"[{label}] Quix Streams peer FAILED: {exc}", file=sys.stderr)
        return {"peer_failed": 1}
    worker_cpu_s = worker.cpu_seconds() - worker_cpu_s
    summary = peer.summary
    differences = oracle_differences(summary, bench.workload.truth)
    figures = {"peer_events_s": records / peer.seconds, "peer_cpu_us_per_event": peer.cpu_s / records * 1e6,
               "peer_peak_rss_mb": peer.peak_rss_bytes / 2**20, "peer_wall_s": peer.seconds,
               "peer_idle_worker_cpu_s": worker_cpu_s, "peer_matches_oracle": float(not differences),
               **{f"peer_{key}": float(summary[key]) for key in
                  ("records", "skipped", "duplicates", "events", "revenue_cents", "customers")}}
    print(f"[{label}] Quix Streams peer: {records:,} records in {peer.seconds:.1f} s: "
          f"{figures['peer_events_s']:,.0f} events/s, {figures['peer_cpu_us_per_event']:.0f} us CPU per record "
          f"(the idle worker meanwhile: {worker_cpu_s:.2f} s CPU)")
    print(f"[{label}] Quix Streams peer counted {summary['events']:,} events, {summary['revenue_cents'] / 100:,.2f} "
          f"revenue, {summary['customers']:,} customers, {summary['duplicates']:,} duplicates, "
          f"{summary['skipped']:,} records skipped: "
          + ("as the oracle" if not differences else "DIFFERS from the oracle: " + "; ".join(differences)))
    return figures


def freshness_figures(bench: Bench, settings: Settings, client: Client, run: int, steady: float,
                      worker: WorkerProcess) -> dict[str, float]:
    """Freshness at a steady rate, and the worker's CPU meanwhile: near a core, queueing, not
    the worker's waits, makes the tail."""
    rate = bench.options.freshness_rate or steady / 2
    count = max(1, int(rate * bench.options.freshness_s))
    messages = clean_messages(settings, bench.options.seed + 1000 + run, bench.options.customers, count)
    print(f"[r{run}] freshness: {len(messages):,} events at {rate:,.0f}/s")
    cpu_s, started = worker.cpu_seconds(), time.monotonic()
    result = measure_freshness(settings, client, messages, rate)
    cpu_s, seconds = worker.cpu_seconds() - cpu_s, time.monotonic() - started
    cores, us_per_event = cpu_s / seconds, cpu_s / max(result.published, 1) * 1e6
    print(f"[r{run}] freshness p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms "
          f"(achieved {result.achieved_rate:,.0f}/s, {result.missing} never seen; "
          f"worker {cores:.2f} of a core, {us_per_event:,.0f} us CPU per event); p50 of the first third "
          f"{result.p50_first_third_ms:,.0f} ms, of the last {result.p50_last_third_ms:,.0f} ms")
    return {"freshness_target_rate": rate, "freshness_rate": result.achieved_rate,
            "freshness_p50_ms": result.p50_ms, "freshness_p99_ms": result.p99_ms,
            "freshness_p50_first_third_ms": result.p50_first_third_ms,
            "freshness_p50_last_third_ms": result.p50_last_third_ms,
            "freshness_max_ms": result.max_ms, "freshness_missing": result.missing,
            "freshness_worker_cores": cores, "freshness_cpu_us_per_event": us_per_event}


def profiled_run(bench: Bench) -> dict[str, Any]:
    """An extra run with py-spy attached from the first landed row until the rows are exact or
    settled (not in the medians: sampling slows the worker). Where the time goes is worth
    knowing even when the run is not exact, so the profile is kept then, marked so."""
    output = bench.options.out_dir / f"{bench.log_dir.name.removesuffix('-logs')}-profile.txt"
    result: dict[str, Any] = {"collapsed_stacks": str(output), "exact": False}
    with (prepared_run(bench, "profile") as (settings, records), clickhouse(settings) as client,
          running_worker(bench, settings, "profile") as worker):
        recordings: list[pyspy.Recording] = []

        def start() -> None:
            recordings.append(pyspy.Recording(worker.pid, output))

        try:
            landing = wait_until_landed(client, bench.workload.truth, worker, bench.options.timeout_s,
                                        on_first_row=start)
            result.update(exact=True, events_s=records / landing.done_s)
        except PipelineFailed as exc:
            print(f"profiled run FAILED: {exc}", file=sys.stderr)
            if exc.settled_s:
                result["events_s"] = records / exc.settled_s
        finally:
            for recording in recordings:
                recording.stop()
    if output.exists():
        result.update({key: [asdict(s) for s in spots] for key, spots in pyspy.hotspots(output).items()})
    return result


def print_profile(profile: dict[str, Any]) -> None:
    if "by_own_time" not in profile:
        return
    verdict = "exact" if profile["exact"] else "NOT exact"
    print(f"\nprofile (py-spy from the first landed row; run {verdict}, {profile.get('events_s', 0):,.0f} records/s; "
          f"stacks in {profile['collapsed_stacks']})")
    for key, title in (("by_own_time", "top functions by own time"),
                       ("project_by_total_time", "streams/ functions by inclusive time")):
        print(f"{title}:\n    own   total")
        for spot in profile[key]:
            print(f"  {spot['own_share']:5.1%}  {spot['total_share']:5.1%}  {spot['function']}")
