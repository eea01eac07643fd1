"""The stall rule: a worker is stalled while records wait and nothing it reports as progress
changes; /healthz and the watchdog turn unhealthy at the timeout, or when the checks stop."""

from __future__ import annotations

from streams.runtime.liveness import Liveness, StallRule, records_waiting


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stalled_time_counts_only_while_records_wait_without_progress() -> None:
    rule = StallRule()
    assert rule.observe(0, progress=1, waiting=True) == 0
    assert rule.observe(10, progress=1, waiting=True) == 10
    assert rule.observe(20, progress=2, waiting=True) == 0  # progress
    assert rule.observe(35, progress=2, waiting=True) == 15
    assert rule.observe(40, progress=2, waiting=False) == 0  # caught up: nothing to do is not a stall
    assert rule.observe(50, progress=2, waiting=False) == 0
    # New records: counted from the last check that saw none (they came in since).
    assert rule.observe(55, progress=2, waiting=True) == 5
    assert rule.observe(70, progress=2, waiting=True) == 20


def test_records_wait_from_the_committed_offset_or_the_log_start_whichever_is_later() -> None:
    assert records_waiting(log_start=0, log_end=500, committed=None) == 500  # never committed: all of them
    assert records_waiting(log_start=0, log_end=500, committed=120) == 380
    # Retention deleted records before they were read: those are not waiting.
    assert records_waiting(log_start=500, log_end=500, committed=None) == 0
    assert records_waiting(log_start=300, log_end=500, committed=120) == 200
    assert records_waiting(log_start=300, log_end=500, committed=450) == 50
    assert records_waiting(log_start=0, log_end=500, committed=500) == 0


def test_transaction_markers_past_the_last_record_are_not_waiting() -> None:
    # Records up to 498 handed over and committed; 499 is a commit marker, read past.
    assert records_waiting(0, 500, committed=499, hands_over_from=499, reads_from=500) == 0
    # Not yet read past it, or positions not known yet: it counts.
    assert records_waiting(0, 500, committed=499, hands_over_from=499, reads_from=499) == 1
    assert records_waiting(0, 500, committed=499) == 1
    # Records fetched and not handed over yet (the agents' channel is full) wait.
    assert records_waiting(0, 500, committed=450, hands_over_from=450, reads_from=500, fetched_up_to=498) == 50
    assert records_waiting(0, 500, committed=499, hands_over_from=499, reads_from=500, fetched_up_to=498) == 0
    # Records handed over and not committed yet wait, whatever was read.
    assert records_waiting(0, 500, committed=400, hands_over_from=499, reads_from=500) == 100
    # A record appended since reading reached the old log end waits.
    assert records_waiting(0, 501, committed=499, hands_over_from=499, reads_from=500) == 2
    # Handed over and not committed while retention deleted them: they still wait.
    assert records_waiting(500, 500, committed=450, hands_over_from=499, reads_from=500) == 50
    # Nothing committed yet: the records wait.
    assert records_waiting(0, 500, committed=None, hands_over_from=None, reads_from=500) == 500


def test_health_turns_unhealthy_at_the_timeout_and_says_what_waits() -> None:
    clock = Clock()
    liveness = Liveness(timeout_s=60, clock=clock)
    liveness.observe(progress=(5,), waiting=300, detail=lambda: "profile runner: waiting 0 s for Kafka")
    for _ in range(59):
        clock.now += 1
        liveness.observe(progress=(5,), waiting=300, detail=lambda: "profile runner: waiting 59 s for Kafka")
    assert liveness.health().healthy
    clock.now += 1
    liveness.observe(progress=(5,), waiting=300, detail=lambda: "profile runner: waiting 60 s for Kafka")
    health = liveness.health()
    assert not health.healthy and health.stalled_s == 60 and health.waiting == 300
    assert "300 records wait" in health.reason and "waiting 60 s for Kafka" in health.reason
    clock.now += 1
    liveness.observe(progress=(6,), waiting=300, detail=lambda: "")
    assert liveness.health().healthy


def test_health_turns_unhealthy_when_the_checks_stop_running() -> None:
    clock = Clock()
    liveness = Liveness(timeout_s=60, clock=clock)
    clock.now += 59  # start-up counts: the first check must come within the timeout
    assert liveness.health().healthy
    liveness.observe(progress=0, waiting=0, detail=str)
    clock.now += 59.5
    assert liveness.health().healthy and liveness.stalled_seconds() == 59.5
    clock.now += 0.5
    health = liveness.health()
    assert not health.healthy and "has not run for 60 s" in health.reason
