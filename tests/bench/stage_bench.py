"""Processing-stage micro-benchmark: ``python -m tests.bench.stage_bench [--events N] [--anonymous-visits F]``.

Runs the profile and referral stages over simulated traffic in memory (no Kafka, no
ClickHouse: ``tests.support.inmemory``), in a backlog's batches, and reports the CPU
time the stages spend per input record (decode, fold, state encoding, rows, messages), plus
the time to put their rows into a :class:`ClickHouseSink` buffer and to build the insert
columns. Median of several rounds; the result is checked against the oracle, so a faster
wrong stage does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from streams.clickhouse.sink import ClickHouseSink
from streams.runtime.worker import GC_YOUNG_THRESHOLD
from streams.settings import load_settings
from streams.stages.records import BatchOutput, SourceRecord
from streams.tools.oracle import expected
from streams.tools.simulate import SimulationConfig, generate
from tests.bench.stage_instructions import BACKLOG_BATCH
from tests.support.compare import compare_all
from tests.support.inmemory import InMemoryPipeline


class _Timed:
    """Wraps a stage's ``process``: adds its CPU time, and buffers its rows in a sink."""

    def __init__(self, process: Callable[[Sequence[SourceRecord]], BatchOutput], sink: ClickHouseSink) -> None:
        self.process = process
        self.sink = sink
        self.stage_s = 0.0
        self.sink_s = 0.0

    def __call__(self, records: Sequence[SourceRecord]) -> BatchOutput:
        started = time.process_time()
        out = self.process(records)
        processed = time.process_time()
        for table, row in out.rows:
            self.sink.add(table, row)
        self.stage_s += processed - started
        self.sink_s += time.process_time() - processed
        return out


class _NoServer:
    """An insert client that sends nothing: a flush then costs what the insert thread does
    before clickhouse-driver (the columns)."""

    def execute(self, query: str, params: Any = None, **_: Any) -> None:
        pass

    def disconnect(self) -> None:
        pass


def _columns(sink: ClickHouseSink) -> float:
    """CPU seconds to build every buffered table's insert columns (the sink's flush, no server)."""
    started = time.process_time()
    asyncio.run(sink.flush())
    return time.process_time() - started


def one_round(records: Sequence[Any], batch: int, truth: Any) -> dict[str, float]:
    settings = load_settings({})
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records)
    sink = ClickHouseSink(settings, _NoServer)
    profile = _Timed(pipeline.profile_stage.process, sink)
    referral = _Timed(pipeline.referral_stage.process, sink)
    pipeline.profile_stage.process = profile  # type: ignore[method-assign]
    pipeline.referral_stage.process = referral  # type: ignore[method-assign]
    pipeline.run(random.Random(1), batch)
    columns_s = _columns(sink)
    mismatches = compare_all(truth, {t: list(rows.values()) for t, rows in pipeline.rows.tables.items()})
    if mismatches:
        raise SystemExit(f"not exact: {sorted(mismatches)}")
    inputs = len(records)
    return {"profile stage": profile.stage_s / inputs * 1e6, "referral stage": referral.stage_s / inputs * 1e6,
            "sink buffer": (profile.sink_s + referral.sink_s) / inputs * 1e6,
            "insert columns": columns_s / inputs * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--batch", type=int, default=BACKLOG_BATCH, help=f"records per batch ({BACKLOG_BATCH:,})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--anonymous-visits", type=float, default=0.0,
                        help="share of visits made anonymously, with their identifies (identity traffic; 0)")
    parser.add_argument("--gc-threshold", type=int, default=0,
                        help="young-generation GC threshold after gc.freeze(), as the worker sets it "
                             f"({GC_YOUNG_THRESHOLD}); 0: Python's default")
    args = parser.parse_args()
    records = generate(SimulationConfig(seed=7, customers=args.customers, events=args.events,
                                        anonymous_visits=args.anonymous_visits))
    truth = expected(records, load_settings({}))
    if args.gc_threshold:
        gc.freeze()
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    rounds = [one_round(records, args.batch, truth) for _ in range(args.rounds)]
    print(f"{len(records):,} input records, batches of {args.batch:,}, {args.rounds} rounds, "
          f"GC threshold {gc.get_threshold()[0]:,}, CPU us per input record (median), exact against the oracle:")
    for name in rounds[0]:
        print(f"  {name:<16} {statistics.median(r[name] for r in rounds):7.1f}")
    print(f"  {'total':<16} {statistics.median(sum(r.values()) for r in rounds):7.1f}")


if __name__ == "__main__":
    main()
