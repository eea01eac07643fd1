"""Wires a worker process: pipeline, stages, sinks, runners, timers, the stall watchdog and the
/metrics and /healthz endpoint."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import faust
import faust.tables
from aiokafka import AIOKafkaProducer
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from mode.types.signals import BaseSignalT
from prometheus_client import CollectorRegistry

from streams.clickhouse.client import connect
from streams.clickhouse.sink import ClickHouseSink
from streams.contracts.codec import Codec, validate
from streams.contracts.registry import registry_from_settings
from streams.core.erasure import ErasureRequest
from streams.core.events import AnyEvent
from streams.runtime import fence, logs
from streams.runtime.agents import register_agents
from streams.runtime.app import Pipeline, build_pipeline
from streams.runtime.backfill_gate import BackfillGate
from streams.runtime.endpoint import serve
from streams.runtime.liveness import Liveness, records_waiting, start_watchdog
from streams.runtime.metrics import GcPauses, Metrics
from streams.runtime.requested_erasures import requested_erasures
from streams.runtime.runner import BatchRunner, BatchSender, TableState
from streams.runtime.transport import Consumer
from streams.settings import Settings, require_erasure_key
from streams.stages.profile_stage import ProfileStage
from streams.stages.records import BatchOutput, SourceRecord
from streams.stages.referral_stage import ReferralStage

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 30.0
LAG_INTERVAL_S = 2.0
# The profile count goes through every key of the table: not at the lag report's pace.
PROFILES_INTERVAL_S = 15.0
LIVENESS_INTERVAL_S = 1.0
GATE_INTERVAL_S = 1.0


def build_worker(settings: Settings, metrics: Metrics, liveness: Liveness,
                 erasures: Mapping[str, ErasureRequest]) -> Pipeline:
    """Register runners, tasks and timers on a new pipeline; nothing runs until the app starts.
    ``erasures``: the requests in the erasures topic at start (``requested_erasures``)."""
    pipeline = build_pipeline(settings)
    app = pipeline.app
    codec = Codec(registry_from_settings(settings))

    def validate_event(event: AnyEvent) -> None:
        validate(event, settings.currency)

    # Faust creates its consumer on first use. Created here, on the worker's thread: the first
    # use could otherwise be a /metrics scrape (the offset-gap counts) before the worker runs,
    # which bound it to the endpoint thread's event loop, and the worker then failed to start.
    transport_consumer = cast(Consumer, app.consumer)  # the exact:// transport's (streams.runtime.transport)

    def consumer() -> Consumer:
        return transport_consumer

    def assignment() -> frozenset[TP] | None:
        """The consumer's partitions; None until its thread has started. Start-up waits for
        Kafka: the lag report and the progress check then do not run, and the watchdog says so
        once that lasts the stall timeout (Liveness.health), rather than crashing the worker."""
        try:
            return frozenset(consumer().assignment())
        except ConsumerNotStarted:
            return None

    profiles = TableState(pipeline.profiles)
    shares = TableState(pipeline.share_index)
    profile_stage = ProfileStage(settings, codec.decode, validate_event, profiles, requested_erasures=erasures)
    referral_stage = ReferralStage(settings, shares, erased_at_start=erasures.keys())

    def aiokafka_producer() -> AIOKafkaProducer:
        # Faust's producer wraps an aiokafka one; batches go to it directly (streams.runtime.runner).
        return fence.aiokafka_producer(app.producer)

    def runner(name: str, stage_process: Callable[[Sequence[SourceRecord]], BatchOutput],
               state: TableState, on_new_generation: Callable[[], None]) -> BatchRunner:
        sink = ClickHouseSink(settings, lambda: connect(settings), metrics)
        return BatchRunner(name, stage_process, state, sink, metrics, BatchSender(aiokafka_producer),
                           consumer=consumer,
                           flush_wait_s=settings.sink_max_wait_ms / 1000,
                           paused=lambda: bool(app.in_recovery) or not app.flow_control.is_active(),
                           generation=lambda: app.consumer_generation_id,
                           on_new_generation=on_new_generation)

    profile_runner = runner("profile", profile_stage.process, profiles, profile_stage.forget_partitions)
    referral_runner = runner("referral", referral_stage.process, shares, referral_stage.forget_partitions)
    gate = BackfillGate(settings, metrics, consumer)
    register_agents(pipeline, settings, profile_runner, referral_runner, gate.observe)
    for topic in (pipeline.profile_inputs, pipeline.referral_index):
        app.topics.add(topic)  # subscribe: the consumer hands their fetches to the agents' channels

    @app.timer(GATE_INTERVAL_S)
    async def gate_backfill() -> None:
        gate.adjust()

    @app.timer(SWEEP_INTERVAL_S)
    async def expire_waiting_touches() -> None:
        def owned() -> set[int]:
            return {tp.partition for tp in consumer().assignment()
                    if tp.topic == settings.referral_index_topic}

        waiting = await referral_runner.maintain(lambda: referral_stage.expire(owned()))
        if waiting is not None:
            metrics.touches_waiting.set(waiting)

    @app.timer(PROFILES_INTERVAL_S)
    async def count_profiles() -> None:
        metrics.profiles.set(await profiles.count_with_prefix("c:"))

    lag_reported: set[tuple[str, str]] = set()
    # As of the last lag report: the check sees records not fetched yet, not those deleted, and
    # not the transaction markers read past.
    log_ends: dict[TP, int] = {}
    log_starts: dict[TP, int] = {}
    positions: dict[TP, int] = {}
    log_ends_at = time.monotonic()

    def waiting_in(tp: TP, log_end: int, committed: Mapping[TP, int | None]) -> int:
        return records_waiting(log_starts.get(tp, 0), log_end, committed.get(tp), consumer().next_offsets.get(tp),
                               positions.get(tp), consumer().fetched_up_to.get(tp))

    @app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        nonlocal log_ends_at
        assigned = assignment()
        if assigned is None:
            return
        ends, starts = await asyncio.gather(consumer().highwaters(*assigned), consumer().earliest_offsets(*assigned)) \
            if assigned else ({}, {})
        read = await consumer().read_positions() if assigned else {}
        for known, new in ((log_ends, ends), (log_starts, starts), (positions, read)):
            known.clear()
            known.update(new)
        log_ends_at = time.monotonic()
        committed = consumer().committed_offsets
        reported = set()
        for tp, end in ends.items():
            labels = (tp.topic, str(tp.partition))
            metrics.lag.labels(*labels).set(waiting_in(tp, end, committed))
            reported.add(labels)
        # A partition that moved to another worker is that worker's to report.
        for labels in lag_reported - reported:
            metrics.lag.remove(*labels)
        lag_reported.clear()
        lag_reported.update(reported)

    runners = (profile_runner, referral_runner)
    metrics.stalled.set_function(liveness.stalled_seconds)
    metrics.offset_gaps.counts = lambda: consumer().offset_gaps

    async def check_progress() -> None:
        # No broker request here (log ends come from the fetcher and the last lag report), so
        # that only a blocked event loop stops the check.
        assigned = assignment()
        if assigned is None:
            return
        committed = consumer().committed_offsets
        inputs = frozenset(tp for tp in assigned if tp.topic in app.batch_channels)
        waiting_by_input = {tp: waiting_in(tp, max(consumer().log_end(tp) or 0, log_ends.get(tp, 0)), committed)
                            for tp in inputs}
        waiting = sum(waiting_by_input.values())
        recovery = cast(faust.tables.TableManager, app.tables).recovery
        if app.in_recovery:
            waiting += recovery.active_remaining_total()
        progress = (inputs, sum(committed.get(tp) or 0 for tp in inputs),
                    sum(offset or 0 for offset in recovery.active_offsets.values()),
                    sum(runner.sink.retries for runner in runners))
        # A lag report that does not complete (a consumer that no longer answers) hides what
        # waits: count that as waiting.
        report_age = time.monotonic() - log_ends_at
        if report_age > 5 * LAG_INTERVAL_S:
            waiting = max(waiting, 1)
        liveness.observe(progress, waiting, lambda: "; ".join(
            [runner.describe() for runner in runners]
            + [consumer().describe(waiting_by_input, positions), f"last lag report {report_age:.0f} s ago"]))

    app.checks.append((LIVENESS_INTERVAL_S, check_progress))  # from start: recoveries included

    @app.on_rebalance_complete.connect
    def on_rebalance(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        metrics.rebalances.inc()

    return pipeline


def run_worker(settings: Settings) -> None:
    """Start the endpoint and the stall watchdog, and run a worker until it is stopped."""
    import uvloop

    require_erasure_key(settings)
    uvloop.install()
    registry = CollectorRegistry()
    liveness = Liveness(settings.stall_timeout_s)
    serve(settings.metrics_host, settings.metrics_port, registry, liveness.health)
    metrics = Metrics(registry)
    pipeline = build_worker(settings, metrics, liveness, requested_erasures(settings))
    log.info("metrics on http://%s:%d/metrics, liveness on /healthz", settings.metrics_host, settings.metrics_port)
    start_watchdog(liveness)
    _tune_garbage_collector(metrics.gc_pauses)
    _Worker(pipeline.app, loglevel="INFO", quiet=True).execute_from_commandline()


class _Worker(fence.Worker):
    """Faust's worker replaces the log handlers when it starts: the outage filter goes on the new ones."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logs.install()

    async def last_task(self) -> None:
        await asyncio.sleep(0.1)  # mode's 1 s was a second of every restart


# Every record allocates a few dozen objects, almost none of them in reference cycles, while
# tens of thousands of decoded profiles stay alive: with the default thresholds the collector
# runs every 700 allocations and keeps re-scanning those profiles. Start-up objects are frozen
# out of collection and young collections run 70x less often (python -m tests.bench.stage_bench
# --gc-threshold 50000 shows the difference).
GC_YOUNG_THRESHOLD = 50_000


def _tune_garbage_collector(pauses: GcPauses) -> None:
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    gc.callbacks.append(pauses.on_gc)
