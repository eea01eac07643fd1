"""The worker's backfill gate (streams.runtime.backfill_gate) on a clock of its own: it holds the
backfill partitions back while the live records it sees are behind, keeps holding through a
second without a live batch (one batch can take longer), and lets them go once live records
are close again or none came for a while."""

from __future__ import annotations

from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.runtime.backfill_gate import QUIET_S, BackfillGate
from streams.runtime.metrics import Metrics
from streams.runtime.transport import Fetched
from streams.settings import load_settings
from streams.stages.records import InputRecord

SETTINGS = load_settings({})
BACKFILL = [TP(SETTINGS.backfill_topic, p) for p in range(2)]
CLICKS = TP(SETTINGS.input_topics["click"], 0)


class Assigned:
    """What the gate uses of the worker's consumer: its assignment and hold_back."""

    def __init__(self) -> None:
        self.held: frozenset[TP] = frozenset()

    def assignment(self) -> set[TP]:
        return {*BACKFILL, CLICKS}

    def hold_back(self, tps: frozenset[TP]) -> None:
        self.held = tps


def live_batch(ingest_ms: int) -> list[Fetched]:
    return [Fetched(CLICKS, [InputRecord(CLICKS.topic, 0, 0, b"k", b"v", ingest_ms)], 1)]  # type: ignore[list-item]


def test_the_backfill_waits_while_live_records_are_behind_and_goes_on_once_they_are_not() -> None:
    now = [1_000.0]
    consumer = Assigned()
    metrics = Metrics(CollectorRegistry())
    gate = BackfillGate(SETTINGS, metrics, lambda: consumer, clock=lambda: now[0])  # type: ignore[arg-type,return-value]
    bound = SETTINGS.backfill_live_lag_s

    def tick(seconds: float = 1.0, behind_s: float | None = None) -> frozenset[Any]:
        if behind_s is not None:
            gate.observe(live_batch(int((now[0] - behind_s) * 1000)))
        now[0] += seconds
        gate.adjust()
        return consumer.held

    assert tick(behind_s=bound * 0.4) == frozenset()  # close enough
    assert tick(behind_s=bound * 0.6) == frozenset(BACKFILL)  # past half the bound: held back
    assert metrics.backfill_held._value.get() == 1
    assert tick() == frozenset(BACKFILL)  # a second without a live batch: still held
    assert tick(behind_s=bound * 0.3) == frozenset(BACKFILL)  # not yet under a quarter of the bound
    assert tick(behind_s=bound * 0.2) == frozenset()  # under it: read again
    assert tick(behind_s=bound + 1) == frozenset(BACKFILL)
    assert tick(seconds=QUIET_S + 0.1) == frozenset()  # no live record for a while: caught up
    assert metrics.backfill_holds._value.get() == 2
