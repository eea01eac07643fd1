"""Liveness: a worker with records waiting that makes no progress is stuck, and says so.

Progress is whatever shows the worker getting through its work or actively retrying a
dependency it reports on: committed input offsets advancing, changelog records restored, the
assignment changing, ClickHouse inserts being retried (the sink logs and counts those; a
restart would not help). The worker checks this every second (:meth:`Liveness.observe`, on its
event loop); ``/healthz`` and the watchdog thread read the verdict (:meth:`Liveness.health`),
which also turns unhealthy when the checks stop running, i.e. when the event loop is blocked.
A worker stalled for ``stall_timeout_s`` exits with :data:`STALL_EXIT_CODE` so that its
supervisor restarts it: processing is exact after a restart (replays are skipped by offset).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)

STALL_EXIT_CODE = 70  # EX_SOFTWARE (sysexits.h)
_UNSET = object()


def records_waiting(log_start: int, log_end: int, committed: int | None, hands_over_from: int | None = None,
                    reads_from: int | None = None, fetched_up_to: int | None = None) -> int:
    """Records of a partition a consumer has still to read: from its committed offset (none:
    the partition's first) to the log end. Records that retention deleted before they were
    read are not waiting: reading goes on from the log start (auto_offset_reset=earliest).

    ``hands_over_from``, ``reads_from`` and ``fetched_up_to``, when known: the offset of the
    next record the consumer hands over, the offset it reads next, and the offset of the last
    record it fetched. When it has handed over every record it fetched, all of them are
    committed, and it reads from the log end on, the offsets left hold no records: the commit
    markers a transactional producer leaves, which no commit passes until a record follows
    them. Records handed over and not committed yet wait, deleted since or not."""
    if committed is not None and hands_over_from is not None:
        if hands_over_from > committed:
            return max(0, log_end - committed)
        handed_over_all = fetched_up_to is None or fetched_up_to < hands_over_from
        if handed_over_all and reads_from is not None and reads_from >= log_end:
            return 0
    return max(0, log_end - max(log_start, committed or 0))


class StallRule:
    """How long a worker has had records waiting without progress. Pure: time is passed in."""

    def __init__(self) -> None:
        self._progress: Hashable = _UNSET
        self._since = 0.0

    def observe(self, now: float, progress: Hashable, waiting: bool) -> float:
        """Seconds stalled as of ``now``; ``progress`` is any value that changes whenever the
        worker makes progress."""
        if not waiting or progress != self._progress:
            self._progress = progress
            self._since = now
        return now - self._since


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    stalled_s: float
    waiting: int  # records waiting at the last check
    reason: str  # why unhealthy; empty when healthy


class Liveness:
    """The latest stall verdict, written by the worker's checks and read from any thread."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._rule = StallRule()
        self._checked_at = clock()  # start-up counts as a check: it must reach the first one
        self._stalled_s = 0.0
        self._waiting = 0
        self._detail = ""

    def observe(self, progress: Hashable, waiting: int, detail: Callable[[], str]) -> float:
        """Record a check: ``waiting`` records wait; ``detail`` says what the worker is doing
        (called only while stalled). Returns the seconds stalled."""
        now = self.clock()
        stalled = self._rule.observe(now, progress, waiting > 0)
        self._detail = _described(detail) if stalled else ""
        self._waiting = waiting
        self._stalled_s = stalled
        self._checked_at = now
        return stalled

    def stalled_seconds(self) -> float:
        """Seconds without progress while records wait, or since the last check ran."""
        return max(self._stalled_s, self.clock() - self._checked_at)

    def health(self) -> Health:
        since_check = self.clock() - self._checked_at
        if since_check >= self.timeout_s:
            return Health(False, since_check, self._waiting,
                          f"the progress check has not run for {since_check:.0f} s: the event loop is "
                          f"blocked or start-up has not finished")
        if self._stalled_s >= self.timeout_s:
            return Health(False, self._stalled_s, self._waiting,
                          f"no progress for {self._stalled_s:.0f} s while {self._waiting} records wait "
                          f"(committed offsets, changelog restore and sink retries all still): {self._detail}")
        return Health(True, self._stalled_s, self._waiting, "")


def _described(detail: Callable[[], str]) -> str:
    """What ``detail`` says; a detail that fails must not stop the checks that call it."""
    try:
        return detail()
    except Exception as error:  # any failure, said in its place
        return f"(the detail failed: {error!r})"


def start_watchdog(liveness: Liveness, exit: Callable[[int], object] = os._exit,
                   interval_s: float = 1.0) -> threading.Thread:
    """Exit the process once ``liveness`` is unhealthy. A thread: it also fires when the event
    loop is blocked, and it exits at once because a stuck worker's graceful stop would wait on
    what is stuck (a producer flush, a rebalance waiting for acks)."""

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            health = liveness.health()
            if not health.healthy:
                log.error("Worker stalled, exiting with code %d so that its supervisor restarts it: %s",
                          STALL_EXIT_CODE, health.reason)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                exit(STALL_EXIT_CODE)
                return

    thread = threading.Thread(target=watch, name="stall-watchdog", daemon=True)
    thread.start()
    return thread
