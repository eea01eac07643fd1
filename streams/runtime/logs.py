"""Readable logs during outages: repeated client errors become one line per condition per interval.

While Kafka or ClickHouse is away, their clients log every reconnect attempt: aiokafka about a
hundred ERROR lines a second, clickhouse-driver a full traceback per failed connect, Faust's
consumer checks a line per partition every few seconds. Those lines say one thing ("the broker
is unreachable") thousands of times and bury everything else.

:class:`OutageLogFilter`, installed on the root logger's handlers (:func:`install`), sorts the
records of those loggers into :data:`CONDITIONS`. A WARNING or worse opens an episode of its
condition; INFO records join an open episode (the reconnect that follows an outage logs hundreds
of "OffsetCommit failed ... will retry") but never open one. Within an episode the first record
of each kind (its format string) is written, on one line; repeats are counted, and every
:data:`INTERVAL_S` one line gives their count per kind. When a condition has logged nothing for
an interval, a "cleared" line says so with the episode's total. Expected network errors lose
their traceback (the exception's type and message stay on the line). The counting rule is
:class:`Aggregator`, which knows nothing of ``logging``; a daemon thread writes its lines, so a
"cleared" line appears even when nothing else is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

#: Repeats are summarised this often, and a condition that logged nothing for this long is cleared.
INTERVAL_S = 10.0
#: Kinds named on a summary line; the rest are counted as "others".
SUMMARY_KINDS = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Condition:
    """Records of these loggers (name or a child of it) whose format string starts with
    ``message_prefix`` are one condition."""

    name: str  # short tag on every line, and the metric label
    title: str
    loggers: tuple[str, ...]
    message_prefix: str = ""

    def matches(self, logger: str, message: str) -> bool:
        return (any(logger == name or logger.startswith(name + ".") for name in self.loggers)
                and message.startswith(self.message_prefix))


CONDITIONS = (
    Condition("kafka", "Kafka broker unreachable or not ready", ("aiokafka", "kafka")),
    Condition("clickhouse", "ClickHouse unreachable", ("clickhouse_driver",)),
    Condition("sink_retries", "ClickHouse inserts failing, retrying", ("streams.clickhouse.sink",),
              "ClickHouse insert of"),
    # streams.runtime.transport: the project's subclass of Faust's consumer thread logs there.
    Condition("faust_consumer", "Faust consumer checks failing", ("faust.transport", "streams.runtime.transport")),
)
_TITLES = {c.name: c.title for c in CONDITIONS}


def condition_of(logger: str, level: int, message: str) -> Condition | None:
    """The condition a record belongs to, or None (then it is written as it is)."""
    if level < logging.INFO:
        return None
    return next((c for c in CONDITIONS if c.matches(logger, message)), None)


@dataclass(slots=True)
class _Episode:
    started: float
    last_seen: float
    window_start: float
    level: int = logging.WARNING  # the highest of the repeats since the last line
    records: int = 0
    seen_kinds: set[str] = field(default_factory=set)
    repeats: Counter[str] = field(default_factory=Counter)  # kind -> repeats since the last line
    latest: dict[str, str] = field(default_factory=dict)  # kind -> its latest text


@dataclass(frozen=True, slots=True)
class Line:
    level: int
    text: str


class Aggregator:
    """The counting rule (pure: the caller passes the time).

    :meth:`admit` is called per record of a condition and says whether to write it (the first
    of its kind in an episode) or count it; :meth:`due` returns the summary and "cleared" lines
    to write now."""

    #: Records below this level join an open episode but do not open one.
    opening_level = logging.WARNING

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._active: dict[str, _Episode] = {}
        #: Records per condition since start, written or not (the worker exports them).
        self.totals: Counter[str] = Counter()

    def admit(self, condition: str, kind: str, text: str, level: int, now: float) -> bool | None:
        """True: write the record; False: counted for the next summary; None: below the
        opening level outside an episode, not part of the condition (write it as it is)."""
        episode = self._active.get(condition)
        if episode is None:
            if level < self.opening_level:
                return None
            episode = self._active[condition] = _Episode(started=now, last_seen=now, window_start=now)
        self.totals[condition] += 1
        episode.records += 1
        episode.last_seen = now
        if kind not in episode.seen_kinds:
            episode.seen_kinds.add(kind)
            return True
        episode.repeats[kind] += 1
        episode.latest[kind] = text
        episode.level = max(episode.level, level)
        return False

    def due(self, now: float) -> list[Line]:
        lines = []
        for name, episode in list(self._active.items()):
            quiet = now - episode.last_seen >= self.interval_s
            if episode.repeats and (quiet or now - episode.window_start >= self.interval_s):
                lines.append(self._summary(name, episode, now))
            if quiet:
                del self._active[name]
                lines.append(Line(logging.INFO, f"[{name}] cleared: nothing logged for {self.interval_s:.0f} s "
                                                f"({episode.records:,} records over "
                                                f"{episode.last_seen - episode.started:.0f} s)"))
        return lines

    def _summary(self, name: str, episode: _Episode, now: float) -> Line:
        kinds = episode.repeats.most_common()
        named = ", ".join(f"{count:,}x {episode.latest[kind]!r}" for kind, count in kinds[:SUMMARY_KINDS])
        others = sum(count for _, count in kinds[SUMMARY_KINDS:])
        if others:
            named += f", {others:,}x others"
        text = (f"[{name}] {_TITLES.get(name, name)}: {sum(episode.repeats.values()):,} more records in the last "
                f"{now - episode.window_start:.0f} s: {named}")
        level, episode.level = episode.level, logging.WARNING
        episode.repeats.clear()
        episode.latest.clear()
        episode.window_start = now
        return Line(level, text)


@cache
def expected_network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that only say a peer is unreachable or slow: their traceback tells nothing more.
    (Imported on first use: the CLI installs the filter before it knows it needs the clients.)"""
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError
    from clickhouse_driver.errors import NetworkError, SocketTimeoutError

    return (OSError, EOFError, TimeoutError, NetworkError, SocketTimeoutError, KafkaConnectionError,
            NodeNotReadyError, RequestTimedOutError)


class OutageLogFilter(logging.Filter):
    """Applies :class:`Aggregator` to log records; see the module docstring.

    Installed on handlers (a logger's filter would not see its children's records), so one
    record may pass several: the decision is kept on the record."""

    def __init__(self, aggregator: Aggregator, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.aggregator = aggregator
        self.clock = clock
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_streams_outage_write", None)
        if decided is None:
            decided = record._streams_outage_write = self._decide(record)
        return bool(decided)

    def _decide(self, record: logging.LogRecord) -> bool:
        condition = condition_of(record.name, record.levelno, str(record.msg))
        if condition is None:
            return True
        # One line: Faust's consumer checks append paragraphs of generic advice.
        text = (record.getMessage().splitlines() or [""])[0]
        exc = record.exc_info[1] if record.exc_info else None
        network_error = exc is not None and isinstance(exc, expected_network_errors())
        if network_error:
            text = f"{text} ({type(exc).__name__}: {exc})"  # instead of a traceback
        with self.lock:
            write = self.aggregator.admit(condition.name, str(record.msg), text, record.levelno, self.clock())
        if write is None:
            return True
        if write:
            record.msg = f"[{condition.name}] {text}"
            record.args = ()  # not None: Faust's formatter would turn it into (None,)
            if network_error:
                record.exc_info = record.exc_text = None
        return write

    def write_due(self) -> None:
        with self.lock:
            lines = self.aggregator.due(self.clock())
        for line in lines:
            log.log(line.level, line.text)


_installed: OutageLogFilter | None = None


def install() -> OutageLogFilter:
    """Add the filter to every handler of the root logger that lacks it, and start the thread
    that writes summaries. Call again after something replaced the handlers (Faust's worker
    configures logging anew when it starts)."""
    global _installed
    if _installed is None:
        _installed = OutageLogFilter(Aggregator())
        threading.Thread(target=_write_due_forever, args=(_installed,), name="streams-logs", daemon=True).start()
    for handler in logging.getLogger().handlers:
        if _installed not in handler.filters:
            handler.addFilter(_installed)
    return _installed


def totals() -> dict[str, int]:
    """Records per condition since start (empty before :func:`install`)."""
    return dict(_installed.aggregator.totals) if _installed is not None else {}


def _write_due_forever(installed: OutageLogFilter) -> None:
    while True:
        time.sleep(1.0)
        installed.write_due()
