"""When has the workload landed in ClickHouse, and is it exactly the oracle's answer?

Polling the full comparison would load the machine being measured, so the bench polls cheap
aggregates first (a fingerprint: counts and sums that reach the oracle's values only once
every row has its final version) and runs the exact comparison, shared with the integration
tests (``tests.support``), once they match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from clickhouse_driver import Client

from streams.tools.oracle import Expected
from tests.support.clickhouse_rows import read_final_rows
from tests.support.compare import compare_all

#: Aggregates that only reach their final values when every row of the table has.
# Rows of anonymous ids identified as a customer are left out, as the oracle's persons leave
# them out (their customer's rows hold them).
_PEOPLE = " WHERE customer_id NOT IN (SELECT anonymous_id FROM identity_map FINAL)"
FINGERPRINT_SQL: dict[str, str] = {
    "events": "SELECT uniqExact(customer_id, event_id) FROM events",
    "customer_profiles": "SELECT count(), sum(events), sum(referred_clicks + referred_purchases) "
                         "FROM customer_profiles FINAL" + _PEOPLE,
    "customer_hourly": "SELECT count(), sum(events) FROM customer_hourly FINAL" + _PEOPLE,
    "customer_daily": "SELECT count(), sum(events) FROM customer_daily FINAL" + _PEOPLE,
    "minute_totals": "SELECT sum(events) FROM minute_totals FINAL",
    "referral_credits": "SELECT count() FROM referral_credits FINAL",
}

Fingerprint = dict[str, tuple[int, ...]]


class Launched(Protocol):
    """What the wait needs of the worker, or workers, it watches."""

    @property
    def started_at(self) -> float: ...

    @property
    def returncode(self) -> int | None: ...

    def alive(self) -> bool: ...

    def log_tail(self, chars: int = 3000) -> str: ...


class PipelineFailed(RuntimeError):
    """The worker died, timed out, or landed something other than the oracle's answer.

    ``settled_s``: when the rows stopped changing (seconds after launch) if they were inexact.
    """

    def __init__(self, message: str, settled_s: float | None = None) -> None:
        super().__init__(message)
        self.settled_s = settled_s


@dataclass(slots=True)
class Landing:
    """Seconds since the worker's launch: first row in ``events``, and all rows exact."""

    first_row_s: float
    done_s: float
    compare_attempts: int


def expected_fingerprint(truth: Expected) -> Fingerprint:
    profiles = truth.profiles.values()
    return {
        "events": (len(truth.accepted),),
        "customer_profiles": (len(truth.profiles), sum(p["events"] for p in profiles),
                              sum(p["referred_clicks"] + p["referred_purchases"] for p in profiles)),
        "customer_hourly": (len(truth.hourly), sum(b["events"] for b in truth.hourly.values())),
        "customer_daily": (len(truth.daily), sum(b["events"] for b in truth.daily.values())),
        "minute_totals": (sum(m["events"] for m in truth.minutes.values()),),
        "referral_credits": (len(truth.credits),),
    }


def fingerprint(client: Client) -> Fingerprint:
    return {table: tuple(int(v or 0) for v in client.execute(sql)[0]) for table, sql in FINGERPRINT_SQL.items()}


def event_rows(client: Client) -> int:
    return int(client.execute("SELECT count() FROM events")[0][0])


def wait_until_landed(client: Client, truth: Expected, worker: Launched, timeout_s: float,
                      on_first_row: Callable[[], None] = lambda: None,
                      settle_s: float = 30.0, exact_grace_s: float = 30.0) -> Landing:
    """Poll until the fingerprint matches, then compare everything with the oracle.

    ``done_s`` is the start of the first comparison found exact; if the fingerprint matched but
    rows were still changing, comparisons repeat for up to ``exact_grace_s``. Raises
    :class:`PipelineFailed` when the worker exits, time runs out, or the rows differ (at once
    when they stopped changing for ``settle_s`` short of the oracle's fingerprint).
    """
    first_row_s = _wait(worker, timeout_s, lambda: event_rows(client) > 0, poll_s=0.1)
    on_first_row()
    watch = _FingerprintWatch(client, truth, settle_s)
    _wait(worker, timeout_s, watch.matched_or_settled, poll_s=0.25)
    deadline = time.monotonic() + (exact_grace_s if watch.matched else 0.0)
    attempts = 0
    while True:
        attempts += 1
        done_s = time.monotonic() - worker.started_at
        problems = exactness_problems(client, truth)
        if not problems:
            return Landing(first_row_s, done_s, attempts)
        if time.monotonic() >= deadline:
            settled_s = watch.changed_at - worker.started_at
            raise PipelineFailed(f"not exact: rows stopped changing {settled_s:.1f} s after launch; "
                                 f"fingerprint {watch.last}, expected {watch.want}; {_summary(problems)}", settled_s)
        time.sleep(1.0)


def exactness_problems(client: Client, truth: Expected) -> dict[str, list[str]]:
    """The integration tests' comparison of every derived table, plus the raw ``events`` table
    holding exactly the accepted events (which those tests do not look at)."""
    # Rebuilt as the Mapping lists compare_all is typed for (read_final_rows returns dict lists).
    final: dict[str, list[Mapping[str, Any]]] = {table: list(rows) for table, rows in read_final_rows(client).items()}
    problems = compare_all(truth, final)
    landed = set(client.execute("SELECT DISTINCT customer_id, event_id FROM events"))
    accepted = {(a.event.actor_id, a.event.event_id) for a in truth.accepted}
    if landed != accepted:
        problems["events"] = [f"{len(accepted - landed)} accepted events missing, "
                              f"{len(landed - accepted)} unexpected (e.g. {sorted(landed ^ accepted)[:3]})"]
    return problems


class _FingerprintWatch:
    """Cheap completion check: the fingerprint equals the oracle's, or nothing changed for a while."""

    def __init__(self, client: Client, truth: Expected, settle_s: float) -> None:
        self.client, self.settle_s = client, settle_s
        self.needed = len(truth.accepted)
        self.want = expected_fingerprint(truth)
        self.last: Fingerprint | None = None
        self.changed_at = time.monotonic()

    @property
    def matched(self) -> bool:
        return self.last == self.want

    def matched_or_settled(self) -> bool:
        rows = event_rows(self.client)
        # Below the accepted count only the (cheap) count is watched, so a stall shows too.
        current: Fingerprint = fingerprint(self.client) if rows >= self.needed else {"events": (rows,)}
        if current != self.last:
            self.last, self.changed_at = current, time.monotonic()
        return self.matched or time.monotonic() - self.changed_at > self.settle_s


def _wait(worker: Launched, timeout_s: float, condition: Callable[[], bool], poll_s: float) -> float:
    """Seconds since the worker's launch when ``condition`` first held."""
    while True:
        now = time.monotonic()
        if condition():
            return now - worker.started_at
        if not worker.alive():
            raise PipelineFailed(f"the worker exited ({worker.returncode}); its log ends with:\n{worker.log_tail()}")
        if now - worker.started_at > timeout_s:
            raise PipelineFailed(f"not landed within {timeout_s:.0f} s; worker log ends with:\n{worker.log_tail()}")
        time.sleep(poll_s)


def _summary(problems: dict[str, list[str]]) -> str:
    return "; ".join(f"{table}: {lines[:3]}" for table, lines in problems.items())
