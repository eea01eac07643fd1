"""Per-partition lag of a consumer group over time, read from Kafka (committed offsets against
log end offsets), so it works for any number of workers and needs nothing from them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from tests.bench.scaling import LagSample


class LagWatch:
    """Samples ``group``'s lag on ``topics`` every ``interval_s`` in a thread, as partition ->
    records behind summed over the topics; ``started_at`` (``time.monotonic()``) is time zero."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str], partitions: int,
                 started_at: float, interval_s: float = 0.5) -> None:
        self.group, self.started_at, self.interval_s = group, started_at, interval_s
        self.partitions = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        self.samples: list[LagSample] = []
        self.end_offsets: dict[int, int] = {}  # partition -> records, summed over the topics, at the last sample
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group}-lag-watch")
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)

    def __enter__(self) -> LagWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # the state at the end, whatever the interval
        self._admin.close()
        self._consumer.close()

    def sample(self) -> None:
        at_s = time.monotonic() - self.started_at
        ends = self._consumer.end_offsets(self.partitions)
        committed = self._admin.list_group_offsets({self.group: self.partitions}).get(self.group, {})
        lag: Counter[int] = Counter()
        records: Counter[int] = Counter()
        for tp in self.partitions:
            done = committed.get(tp)
            # A partition without a commit yet is behind by everything it holds (topics are new).
            offset = done.offset if done is not None and done.offset >= 0 else 0
            lag[tp.partition] += max(0, ends[tp] - offset)
            records[tp.partition] += ends[tp]
        self.samples.append(LagSample(at_s, dict(lag)))
        self.end_offsets = dict(records)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except KafkaError:  # the group's coordinator is not known yet, or moves: next time
                continue
