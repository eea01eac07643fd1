"""``streams backfill``: import history through the pipeline's own exact path (docs/operations.md,
backfill).

The file holds events as JSON lines (the contract's JSON form, as ``streams publish`` reads)
or as an Avro object container file written with a version of one of the contracts. Every
event is checked before anything of it is sent; a bad one is reported with its line (or
record) number and not sent. Events that occurred at or after the import's cut-over are the
live topics' and are skipped, counted, as are events that occurred before it and are in
ClickHouse from the live topics already. The others go to the backfill topic keyed like live
input, each with the cut-over in a header (docs/definitions.md, history).

Progress is kept in the ledger (:mod:`streams.tools.backfill_ledger`): a restarted import
continues after its last checkpoint and sends nothing twice; an import that finished does
nothing when run again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streams.clickhouse.client import connect
from streams.contracts.codec import Codec, container_events, validate
from streams.contracts.registry import registry_from_settings
from streams.core.events import AnyEvent, Identify
from streams.core.history import cutover_headers
from streams.errors import DecodeError, ValidationError
from streams.publisher import LineError, Publisher, epoch_ms, parse_line
from streams.settings import Settings
from streams.tools.backfill_ledger import (
    BackfillError,
    ImportState,
    Ledger,
    import_headers_of,
    import_id,
    item_header,
)
from streams.tools.humanize import count, duration
from streams.topics import ensure_topics

CHECKPOINT_EVERY = 1_000
# How long the brokers may take to acknowledge a checkpoint's records.
SEND_TIMEOUT_S = 60.0
AVRO_MAGIC = b"Obj\x01"


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def read_items(handle: IO[bytes], currency: str) -> Iterator[tuple[int, AnyEvent | LineError]]:
    """(1-based line or record number, checked event or why not) for every item of the file;
    an Avro container file is recognised by its magic bytes, anything else is JSON lines."""
    if handle.read(len(AVRO_MAGIC)) == AVRO_MAGIC:
        handle.seek(0)
        yield from _container_items(handle, currency)
        return
    handle.seek(0)
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield number, LineError(number, f"not UTF-8: {error}")
            continue
        if line.strip():
            yield number, parse_line(number, line, currency)


def _container_items(handle: IO[bytes], currency: str) -> Iterator[tuple[int, AnyEvent | LineError]]:
    try:
        for number, item in enumerate(container_events(handle), start=1):
            if isinstance(item, DecodeError):
                yield number, LineError(number, str(item))
                continue
            try:
                validate(item, currency)
            except ValidationError as error:
                yield number, LineError(number, str(error))
            else:
                yield number, item
    except DecodeError as error:
        raise BackfillError(f"not an Avro container file of an interaction event contract: {error}") from None


def after_cutover(event: AnyEvent, cutover_ms: int) -> bool:
    """Whether the live topics carry ``event`` (identifies have no time and are history)."""
    return not isinstance(event, Identify) and event.occurred_at_ms >= cutover_ms


@dataclass(slots=True)
class Progress:
    """Progress on stderr: a line rewritten in place on a terminal, every ``interval_s`` otherwise."""

    total_bytes: int
    out: IO[str] = sys.stderr
    started: float = 0.0
    shown: float = 0.0
    terminal: bool = False

    def __post_init__(self) -> None:
        self.started = self.shown = time.monotonic()
        self.terminal = self.out.isatty()

    def update(self, read_bytes: Callable[[], int], state: ImportState, sent_now: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < (0.5 if self.terminal else 10.0):
            return
        self.shown = now
        line = progress_line(read_bytes(), self.total_bytes, state, sent_now, now - self.started)
        print(("\r" if self.terminal else "") + line, end="\n" if final or not self.terminal else "",
              file=self.out, flush=True)


def progress_line(read_bytes: int, total_bytes: int, state: ImportState, sent_now: int, elapsed_s: float) -> str:
    """What the progress shows: share of the file read, events sent, their rate and the time left."""
    share = read_bytes / total_bytes if total_bytes else 1.0
    rate = sent_now / elapsed_s if elapsed_s > 0 else 0.0
    left = elapsed_s * (1 - share) / share if share > 0 else 0.0
    return (f"backfill: {share:6.1%} of the file, {count(state.sent)} events sent, {count(rate)} events/s, "
            f"{count(state.invalid)} bad, {count(state.after_cutover)} after the cut-over, "
            f"ETA {duration(left) if share < 1 else 'done'}")


@dataclass(frozen=True, slots=True)
class BackfillReport:
    state: ImportState
    already_done: bool
    resumed_from: int
    errors: list[LineError]


def backfill(settings: Settings, path: Path, cutover_ms: int, *, max_rate: float = 0.0) -> BackfillReport:
    """Import ``path`` with ``cutover_ms`` (see the module docstring); ``max_rate``: events per
    second at most (0: as fast as the brokers take them)."""
    key = import_id(file_digest(path), cutover_ms)
    ledger = Ledger(settings)
    ensure_topics(settings)
    ledger.ensure()
    state = ledger.read(key)
    if state is not None and state.finished:
        return BackfillReport(state, already_done=True, resumed_from=state.done, errors=[])
    sent_before_stop = ledger.items_sent_after(key, state.offsets) if state is not None else set()
    state = state or ImportState(path.name, cutover_ms, offsets=ledger.backfill_end_offsets())
    resumed_from = state.done
    live = live_events_before(settings, cutover_ms)
    errors: list[LineError] = []
    codec = Codec(registry_from_settings(settings))
    import_headers = import_headers_of(key, cutover_headers(cutover_ms))
    shown = Progress(path.stat().st_size)
    started, sent_at_start, since_checkpoint = time.monotonic(), state.sent, 0
    with path.open("rb") as handle, Publisher(settings) as publisher:

        def checkpoint(finished: bool = False) -> None:
            publisher.flush(SEND_TIMEOUT_S)
            if publisher.counts.failed:
                raise BackfillError(f"{publisher.counts.failed} record(s) were not acknowledged; run the same "
                                    f"command again to continue from the last checkpoint ({state.done})")
            state.finished = finished
            state.offsets = ledger.backfill_end_offsets()
            publisher.publish_raw(ledger.topic, key.encode(), state.encode())
            publisher.flush(SEND_TIMEOUT_S)

        checkpoint()  # where the import's records start, before the first of them
        for number, item in read_items(handle, settings.currency):
            if number <= resumed_from:
                continue
            if isinstance(item, LineError):
                errors.append(item)
                state.invalid += 1
            elif after_cutover(item, cutover_ms):
                state.after_cutover += 1
            elif (item.actor_id, item.event_id) in live:
                state.already_live += 1
            else:
                if number not in sent_before_stop:
                    publisher.publish_raw(settings.backfill_topic, item.actor_id.encode(), codec.encode(item),
                                          headers=[*import_headers, item_header(number)])
                state.sent += 1
                _pace(state.sent - sent_at_start, started, max_rate)
            state.done = number
            since_checkpoint += 1
            if since_checkpoint == CHECKPOINT_EVERY:
                checkpoint()
                since_checkpoint = 0
            shown.update(handle.tell, state, state.sent - sent_at_start)
        checkpoint(finished=True)
        shown.update(lambda: path.stat().st_size, state, state.sent - sent_at_start, final=True)
    return BackfillReport(state, already_done=False, resumed_from=resumed_from, errors=errors)


def live_events_before(settings: Settings, cutover_ms: int) -> set[tuple[str, str]]:
    """(actor id, event id) of the events in ClickHouse from the live topics that occurred
    before the cut-over (late ones, normally few): an import does not send them again."""
    client = connect(settings)
    try:
        rows = client.execute("SELECT DISTINCT customer_id, event_id FROM events WHERE occurred_at_ms < %(cutover)s "
                              "AND source_topic != %(backfill)s",
                              {"cutover": cutover_ms, "backfill": settings.backfill_topic})
    finally:
        client.disconnect()
    return {(actor, event_id) for actor, event_id in rows}


def _pace(sent: int, started: float, max_rate: float) -> None:
    """Sleep as long as sending ran ahead of ``max_rate``."""
    if max_rate > 0:
        ahead = sent / max_rate - (time.monotonic() - started)
        if ahead > 0.05:
            time.sleep(ahead)


def spooled_stdin() -> Path:
    """Standard input copied to a temporary file: an import is named by its content, and
    continuing an interrupted one means reading it again."""
    fd, name = tempfile.mkstemp(prefix="streams-backfill-")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return Path(name)


def parse_cutover(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time with an offset."""
    try:
        return epoch_ms("--cutover", int(text) if text.isdigit() else text)
    except ValidationError as error:
        raise BackfillError(str(error)) from None


def report_lines(report: BackfillReport) -> list[str]:
    state = report.state
    if report.already_done:
        return [f"already imported: {state.file} with cut-over {state.cutover_ms} ({count(state.sent)} events "
                f"sent, {count(state.invalid)} bad, {count(state.after_cutover)} after the cut-over); nothing to do"]
    lines = [f"item {error.line}: {error.message}" for error in report.errors]
    if report.resumed_from:
        lines.append(f"continued after item {report.resumed_from}, where an earlier run stopped")
    if state.invalid > len(report.errors):
        lines.append(f"{count(state.invalid - len(report.errors))} bad item(s) before item {report.resumed_from + 1} "
                     "were reported by the earlier run")
    lines.append(f"sent {count(state.sent)} events, {count(state.invalid)} bad (not sent), "
                 f"{count(state.after_cutover)} at or after the cut-over and {count(state.already_live)} already "
                 "in ClickHouse from the live topics (not sent: the live topics carry them)")
    return lines
