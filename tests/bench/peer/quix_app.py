"""The bench's peer: a Quix Streams application doing comparable per-customer work.

It reads the input topics from the earliest offset, decodes the Avro values (Confluent wire
format) with Quix's ``AvroDeserializer`` against the Schema Registry, and keeps, per customer
(the record key), in Quix's RocksDB state store: events counted, revenue in cents (purchases),
the latest event time, and the last ``RECENT_IDS_KEPT`` event ids, which drop duplicates. The
topics' dataframes are concatenated, so that a customer has one state over all of them, as in
the worker (Quix then reads the topics in timestamp order, in batches of up to 10,000 records).
Records that do not decode are skipped through ``on_consumer_error`` and counted.

Run by the bench with ``.venv-peer/bin/python`` (quixstreams pins another confluent-kafka than
the project, so this file imports nothing of ``streams`` or ``tests``). It stops once it has
read ``--records`` records, which Quix follows with a final commit of state, changelog and
offsets, then writes a JSON summary to ``--summary`` and waits for its standard input to close,
so that the bench can read its CPU time and peak RSS from /proc as it does for the worker.
See docs/benchmarks.md, "Peer: Quix Streams".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry.error import SchemaRegistryError
from quixstreams import Application, State
from quixstreams.models import SchemaRegistryClientConfig, SerializationContext
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.models.serializers.exceptions import SerializationError

RECENT_IDS_KEPT = 1_000  # as the worker's recent ids per topic and key (streams/core/replay.py)
# How long a fetch waits on the broker for records: librdkafka's default, 500 ms, is also how
# long an offset lookup can wait behind one on the same connection (Quix looks up each assigned
# partition's offsets, one at a time). The worker waits 100 ms, for the same reason.
CONSUMER_CONFIG = {"fetch.wait.max.ms": 100}
# How long one batch read waits for a full batch (Quix's default is 1 s): as long as the worker
# waits before it processes a partial batch (STREAMS_BATCH_MAX_WAIT_MS).
POLL_TIMEOUT_S = 0.2
SCHEMA_NOT_FOUND = 40403
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Tally:
    """What the summary reports, counted as records go by."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.processed = self.skipped = self.duplicates = 0
        self.events = self.revenue_cents = self.customers = 0
        self.stopped_at = 0.0

    @property
    def read(self) -> int:
        return self.processed + self.skipped


class RememberingAvroDeserializer(AvroDeserializer):
    """Quix's ``AvroDeserializer`` with a schema registry, which remembers the schema ids the
    registry does not know.

    Confluent's client caches the schemas it found, not the ids it did not: every record
    carrying an unknown id would cost a registry round trip (3-4 ms here, some 30 records'
    worth of work). The worker remembers such ids too (streams/contracts/confluent.py)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unknown_ids: set[bytes] = set()

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        schema_id = value[1:5]
        if schema_id in self.unknown_ids:
            raise SerializationError(f"the registry has no schema {int.from_bytes(schema_id, 'big')}")
        try:
            return super().__call__(value, ctx)
        except SerializationError as exc:
            cause = exc.__cause__
            if isinstance(cause, SchemaRegistryError) and cause.error_code == SCHEMA_NOT_FOUND:
                self.unknown_ids.add(schema_id)
            raise


def fold(tally: Tally, value: dict[str, Any], state: State) -> None:
    """One event into its customer's state: counted once per event id, revenue, last seen."""
    profile = state.get("profile")
    if profile is None:
        tally.customers += 1
        profile = {"events": 0, "revenue_cents": 0, "last_seen_ms": None, "recent_ids": []}
    recent: list[str] = profile["recent_ids"]
    event_id = value["event_id"]
    if event_id in recent:
        tally.duplicates += 1
        return
    recent.append(event_id)
    if len(recent) > RECENT_IDS_KEPT:
        del recent[0]
    profile["events"] += 1
    tally.events += 1
    amount = value.get("amount")  # a Decimal: only purchases have one
    if amount is not None:
        cents = int(amount.scaleb(2))
        profile["revenue_cents"] += cents
        tally.revenue_cents += cents
    occurred_ms = (value["occurred_at"] - _EPOCH) // _MS
    if profile["last_seen_ms"] is None or occurred_ms > profile["last_seen_ms"]:
        profile["last_seen_ms"] = occurred_ms
    state.set("profile", profile)


def build(args: argparse.Namespace, tally: Tally) -> Application:
    def stop_when_all_read(app: Application) -> None:
        if tally.read >= tally.expected and not tally.stopped_at:
            tally.stopped_at = time.monotonic()
            app.stop()  # Quix then commits the checkpoint once more before run() returns

    def on_processed(topic: str, partition: int, offset: int) -> None:
        tally.processed += 1
        stop_when_all_read(app)

    def on_consumer_error(exc: Exception, message: Any, logger: logging.Logger) -> bool:
        if message is None or not isinstance(exc, SerializationError):
            return False  # Kafka's own errors stop the run
        tally.skipped += 1
        stop_when_all_read(app)
        return True

    app = Application(
        broker_address=args.bootstrap_servers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        on_consumer_error=on_consumer_error,
        on_message_processed=on_processed,
        consumer_extra_config=CONSUMER_CONFIG,
        consumer_poll_timeout=POLL_TIMEOUT_S,
    )
    deserializer = RememberingAvroDeserializer(
        schema_registry_client_config=SchemaRegistryClientConfig(url=args.registry_url))
    frames = [app.dataframe(app.topic(name, value_deserializer=deserializer, key_deserializer="str"))
              for name in args.topics.split(",")]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.concat(frame)
    merged.update(lambda value, state: fold(tally, value, state), stateful=True)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--registry-url", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated input topics")
    parser.add_argument("--group", required=True, help="consumer group, fresh per run")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--records", type=int, required=True, help="records in the topics: stop after reading them")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds between commits (1.0)")
    parser.add_argument("--summary", type=Path, required=True, help="where the JSON summary goes")
    args = parser.parse_args()
    tally = Tally(args.records)
    app = build(args, tally)
    app.run()
    done_at = time.monotonic()
    summary = {"done_monotonic": done_at, "stopped_monotonic": tally.stopped_at, "records": tally.read,
               "processed": tally.processed, "skipped": tally.skipped, "duplicates": tally.duplicates,
               "events": tally.events, "revenue_cents": tally.revenue_cents, "customers": tally.customers}
    partial = args.summary.with_suffix(".partial")
    partial.write_text(json.dumps(summary) + "\n")
    os.replace(partial, args.summary)
    sys.stdin.read()  # the bench closes it once it has read /proc


if __name__ == "__main__":
    main()
