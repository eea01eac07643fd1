"""Restart and rebalance pauses: ``python -m tests.bench.restart_bench [--customers N ...] [--stores URL ...]``.

Per table store and state size, on fresh topics, consumer group and database: one click for
each of N customers is published and a worker builds their state (N profiles); then, in turn,

- *sigterm*, *sigkill*: the worker is stopped with that signal and a new one launched as soon
  as it has exited (same table directory: a restarted process). The group waits for a killed
  member's session timeout;
- *sigterm static*, *sigkill static*: the same with static group membership
  (``STREAMS_GROUP_INSTANCE_ID``, the same name before and after);
- *rebalance*: while events trickle in at ``--trickle-rate``, a second worker with an empty
  table directory joins; the figure is the longest any of those events took from publish to
  its row in ClickHouse (the ``p50`` beside it is the trickle's usual latency; events not
  landed 30 s after the trickle stopped are counted, and must be 0).

At each signal a probe of new clicks, spread over every partition, is published; a restart's
*pause* is the time from the signal until the new worker has processed all of the probe
(``streams_events_processed_total``). The worker's log splits it into phases
(``tests.bench.phases``). Each figure is the median over ``--runs``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from confluent_kafka import Producer

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.core.events import Click
from streams.settings import Settings, load_settings
from streams.topics import ensure_topics
from tests.bench.freshness import clean_messages, measure_freshness
from tests.bench.phases import milestones, phases
from tests.bench.report import REPO
from tests.bench.worker_process import WorkerProcess
from tests.bench.workload import bench_name, delete_everything_named, free_port, run_settings
from tests.conftest import local_environ

PROBE_EVENTS = 200
# (signal, static membership of the new worker, figure name); None: not measured (the switch
# to static membership: the old worker is not a static member yet).
RESTARTS = ((signal.SIGTERM, False, "sigterm"), (signal.SIGKILL, False, "sigkill"),
            (signal.SIGTERM, True, None), (signal.SIGTERM, True, "sigterm static"),
            (signal.SIGKILL, True, "sigkill static"))


def clicks(prefix: str, count: int, now_ms: int) -> list[Click]:
    return [Click(event_id=f"{prefix}-{i}", customer_id=f"{prefix}-{i}", occurred_at_ms=now_ms - 60_000,
                  channel="web", session_id=None, page="/", product_id=None, referrer_share_id=None)
            for i in range(count)]


def publish(settings: Settings, events: Sequence[Click]) -> None:
    """librdkafka with its murmur2 partitioner: each record on its key's partition, as the
    pipeline places customers (nothing re-routed), ~10x kafka-python's rate."""
    codec = Codec(registry_from_settings(settings))
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "partitioner": "murmur2_random",
                         "enable.idempotence": True, "linger.ms": 20})
    for event in events:
        while True:
            try:
                producer.produce(settings.input_topics[event.type], key=event.actor_id.encode(),
                                 value=codec.encode(event))
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} records not delivered")


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

    def launch(self, settings: Settings | None = None) -> WorkerProcess:
        self.launched += 1
        worker = WorkerProcess(settings or self.settings, self.log_dir / f"worker-{self.launched}.log")
        worker.start()
        return worker

    def restart(self, worker: WorkerProcess, how: signal.Signals,
                settings: Settings) -> tuple[WorkerProcess, dict[str, float]]:
        """Signal ``worker``, launch its successor once it has exited; the pause and its phases."""
        before = time.time()
        started = time.monotonic()
        worker.stop(how)
        exited = time.monotonic()
        new = self.launch(settings)
        publish(self.settings, clicks(f"probe-{self.launched}", PROBE_EVENTS, int(time.time() * 1000)))
        # A new process counts from zero; the probe is all it processes (the old one committed).
        wait_for(lambda: processed(new) >= PROBE_EVENTS, self.timeout_s, "the probe")
        done = time.monotonic()
        to_epoch = before - started  # the log's clock is the wall clock
        clock = milestones(new.log_path.read_text(errors="replace").splitlines())
        clock |= {"launch": new.started_at + to_epoch, "processed": done + to_epoch}
        return new, {"pause": done - started, "old worker exits": exited - started} | phases(clock)

    def rebalance(self, workers: list[WorkerProcess], rate: float, settle_s: float) -> dict[str, float]:
        """A second worker (own table directory, static member "b") joins ``workers`` under a trickle."""
        second_settings = dataclasses.replace(self.settings, table_dir=self.settings.table_dir + "-b",
                                              metrics_port=free_port(), group_instance_id="b")
        joined: list[WorkerProcess] = []
        first_processed: list[float] = []

        def join() -> None:
            joined.append(self.launch(second_settings))
            workers.append(joined[0])  # stopped by the caller

        def settled() -> bool:  # the second worker has processed for settle_s
            if joined and not first_processed and processed(joined[0]) > 0:
                first_processed.append(time.monotonic())
            return bool(first_processed) and time.monotonic() - first_processed[0] > settle_s

        messages = clean_messages(self.settings, seed=11, customers=10_000, count=int(rate * min(self.timeout_s, 300)))
        threading.Timer(settle_s, join).start()  # the trickle's usual latency first
        client = connect(self.settings)
        try:
            result = measure_freshness(self.settings, client, messages, rate, enough=settled)
        finally:
            client.disconnect()
        return {"longest wait": result.max_ms / 1000, "p50 wait": result.p50_ms / 1000,
                "never landed": float(result.missing)}


def measure(store: str, customers: int, args: argparse.Namespace, base_dir: Path) -> dict[str, dict[str, float]]:
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
        figures = {"build": {"pause": time.monotonic() - started}}
        for how, static, figure in RESTARTS:
            time.sleep(3)  # past a commit: the restarted worker processes only the probe
            restarted = dataclasses.replace(settings, group_instance_id="a" if static else "")
            worker, measured = scenario.restart(workers.pop(), how, restarted)
            workers.append(worker)
            if figure is not None:
                figures[figure] = measured
                print(f"[{store} {customers:,}] {figure}: {line(measured)}")
        time.sleep(3)
        figures["rebalance"] = scenario.rebalance(workers, args.trickle_rate, settle_s=5.0)
        print(f"[{store} {customers:,}] rebalance: {line(figures['rebalance'])}")
        return figures
    finally:
        for worker in workers:
            worker.stop()
        delete_everything_named(settings, name)


def line(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in figures.items())


def medians(runs: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {figure: {k: statistics.median(run[figure][k] for run in runs) for k in runs[0][figure]}
            for figure in runs[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.restart_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="customers of state (100000 1000000)")
    parser.add_argument("--stores", nargs="+", default=["rocksdb://"], help="table stores (rocksdb://)")
    parser.add_argument("--runs", type=int, default=1, help="runs per store and size; figures are medians (1)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    parser.add_argument("--trickle-rate", type=float, default=200.0, help="events/s during the rebalance (200)")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one step, s (900)")
    args = parser.parse_args(argv)
    base_dir = REPO / "bench-results" / f"restart-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    load_settings(local_environ())  # fail early on bad settings
    for customers in args.customers:
        for store in args.stores:
            result = medians([measure(store, customers, args, base_dir) for _ in range(args.runs)])
            print(f"\n{store}, {customers:,} customers: medians over {args.runs} run(s), seconds; logs in {base_dir}")
            for figure, values in result.items():
                print(f"  {figure:<15} {line(values)}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise SystemExit(main())
