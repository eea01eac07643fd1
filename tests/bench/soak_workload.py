"""Live traffic for long runs, made chunk by chunk so that millions of events never sit in
memory at once, and a tally of what was made to check the landed rows against.

Each chunk is one run of the simulator (``streams.tools.simulate``) with a seed of its own, so
event ids never repeat and the simulator's Zipf-like activity is drawn anew: the busy customers
change from chunk to chunk, as they do from day to day. A chunk's events occurred in the
``window_ms`` before it was made and are published within seconds of that, so they reach the
topics at most a window (15 min by default) after they occurred: within the allowed lateness
(1 h), none is late, and event time moves forward with the run as live traffic does.

Every event must land: the simulator's anomalies are off (no duplicates, malformed, late,
out-of-order or far-future records), and so are touches of unknown shares and of shares past
the attribution window, which would wait in the share index for a day. The simulator's "old
shares" (made before the attribution window, hence late) are left out.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.core.events import Click, Purchase
from streams.settings import Settings
from streams.tools.simulate import SimRecord, SimulationConfig, Tag, generate
from tests.bench.freshness import Message

WINDOW_MS = 15 * 60_000
# (chunk index, events made before it, events wanted) -> the chunk's records, in publish order
MakeChunk = Callable[[int, int, int], list[SimRecord]]
# Old shares are one in 500 of a simulated run's events; ask for this many more to make up for them.
OLD_SHARES_PER_EVENT = 1 / 499


@dataclass(slots=True)
class Tally:
    """What the chunks made so far: events per type, purchase revenue, customers touched."""

    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    revenue_cents: int = 0
    customers: set[str] = field(default_factory=set)  # bounded by the simulated customers

    @classmethod
    def of(cls, records: list[SimRecord]) -> Tally:
        tally = cls()
        tally.add(records)
        return tally

    def add(self, records: list[SimRecord]) -> None:
        for record in records:
            event = record.event
            assert event is not None
            self.events += 1
            self.by_type[str(event.type)] += 1
            self.customers.add(event.actor_id)
            if isinstance(event, Purchase):
                self.revenue_cents += event.amount_cents

    def merge(self, other: Tally) -> None:
        self.events += other.events
        self.by_type.update(other.by_type)
        self.revenue_cents += other.revenue_cents
        self.customers |= other.customers


def on_time_records(settings: Settings, seed: int, customers: int, events: int, window_ms: int) -> list[SimRecord]:
    """``events`` clean simulated events that occurred in the ``window_ms`` before now."""
    now_ms = int(time.time() * 1000)
    config = SimulationConfig.for_settings(
        settings, seed=seed, customers=customers, events=events + int(events * OLD_SHARES_PER_EVENT) + 1,
        start_ms=now_ms - window_ms, span_ms=window_ms, out_of_order=0.0, late=0.0, duplicates=0.0,
        far_future=0.0, malformed=0.0, unknown_share=0.0, outside_window=0.0)
    records = [r for r in generate(config) if r.event is not None and Tag.OLD_SHARE not in r.tags]
    return records[:events]  # in publish order: what is cut is the last few milliseconds


def simulated(settings: Settings, seed: int, customers: int, window_ms: int = WINDOW_MS) -> MakeChunk:
    """Chunks of the simulator's traffic over ``customers``, chunk ``index`` with seed ``seed + index``."""
    return lambda index, first, count: on_time_records(settings, seed + index, customers, count, window_ms)


def one_click_each(customers: int) -> MakeChunk:
    """Chunks of one click per simulated customer (named as the simulator names them for
    ``customers``), stamped a second ago: traffic that leaves every customer in the state."""
    width = len(str(customers - 1))

    def make(index: int, first: int, count: int) -> list[SimRecord]:
        at_ms = int(time.time() * 1000) - 1_000
        clicks = [Click(f"ev-warm-{i:x}", f"cust-{i:0{width}d}", at_ms, "web", None, "/", None, None)
                  for i in range(first, min(first + count, customers))]
        return [SimRecord(click.type, click.actor_id.encode(), at_ms, click) for click in clicks]

    return make


class ChunkFeeder(threading.Thread):
    """Makes the chunks of ``events`` events with ``make_chunk`` in a thread of its own, at most
    ``ahead`` chunks before the publisher needs them (so its memory is a few chunks, whatever the
    run's length), and encodes them. Each chunk is added to ``tally`` (its own unless given one)
    when the publisher takes it: the tally leads what was sent by at most one chunk."""

    def __init__(self, settings: Settings, make_chunk: MakeChunk, events: int, chunk_events: int,
                 tally: Tally | None = None, ahead: int = 2) -> None:
        super().__init__(name="chunk-feeder", daemon=True)
        self.settings, self.make_chunk, self.events, self.chunk_events = settings, make_chunk, events, chunk_events
        self.tally = Tally() if tally is None else tally
        self.codec = Codec(registry_from_settings(settings))
        self._chunks: queue.Queue[tuple[Tally, list[Message]] | BaseException | None] = queue.Queue(maxsize=ahead)

    def run(self) -> None:
        try:
            made = index = 0
            while made < self.events:
                records = self.make_chunk(index, made, min(self.chunk_events, self.events - made))
                if not records:
                    raise ValueError(f"chunk {index} is empty after {made:,} of {self.events:,} events")
                made, index = made + len(records), index + 1
                self._chunks.put((Tally.of(records), [
                    (self.settings.input_topics[r.topic_type], r.key, self.codec.encode(r.event))
                    for r in records if r.event is not None]))
            self._chunks.put(None)
        except BaseException as exc:  # handed to the publisher, which reports it
            self._chunks.put(exc)

    def messages(self) -> Iterator[Message]:
        """Every message of every chunk, in order (for a :class:`PacedPublisher`)."""
        while True:
            chunk = self._chunks.get()
            if chunk is None:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            tally, messages = chunk
            self.tally.merge(tally)
            yield from messages
