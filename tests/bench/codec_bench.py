"""Codec micro-benchmark: ``python -m tests.bench.codec_bench [--publish]``.

Encodes N mixed events, then decodes them, several rounds each, with
(a) our codec (the compiled reader of ``native/``: the body straight into the event object),
(a') fastavro's reader with logical types stripped (ints and unscaled cents), then the event,
(a'') fastavro's reader with logical types on (datetime/Decimal, converted back to ms/cents), and
(b) the ``avro`` package's DatumReader (to dicts only, so it does less work than the others).
Prints median events/s per way and the ratios. ``--publish`` also measures the publisher
against the broker in the settings (a throwaway topic prefix; topics are left behind).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import avro.io
import avro.schema
import fastavro

from streams.contracts.codec import Codec, contract_fields, strip_logical_types
from streams.contracts.registry import EmbeddedRegistry
from streams.core.events import EVENT_CLASSES, AnyEvent, TicketAction
from tests.bench.sample import sample_events

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _median_rate(run: Callable[[], object], count: int, rounds: int) -> float:
    """Median events/s over ``rounds`` runs of ``run`` (which handles ``count`` events)."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def _fastavro_decoder(registry: EmbeddedRegistry, logical_types: bool) -> Callable[[bytes], AnyEvent]:
    """fastavro's reader, then the event: with logical types on, datetime/Decimal converted
    back to ms/cents; off, the unscaled decimal bytes read as cents."""
    parsed: dict[int, Any] = {}

    def decode(value: bytes) -> AnyEvent:
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in parsed:
            schema = registry.schema(schema_id)
            parsed[schema_id] = fastavro.parse_schema(schema if logical_types else strip_logical_types(schema))
        body = io.BytesIO(value)
        body.seek(5)
        record: Any = fastavro.schemaless_reader(body, parsed[schema_id], None)
        if logical_types:
            record["occurred_at"] = (record["occurred_at"] - _EPOCH) // _MS
        if "amount" in record:
            amount = record["amount"]
            record["amount"] = int(amount.scaleb(2)) if logical_types else int.from_bytes(amount, "big", signed=True)
        if "action" in record:
            record["action"] = TicketAction(record["action"])
        event_type = registry.event_type(schema_id)
        cls = EVENT_CLASSES[event_type]
        return cls(*[record[name] for _, name in contract_fields(event_type)])

    return decode


def _avro_package_decoder(registry: EmbeddedRegistry) -> Callable[[bytes], object]:
    readers: dict[int, avro.io.DatumReader] = {}

    def decode(value: bytes) -> object:
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in readers:
            schema = avro.schema.parse(json.dumps(registry.schema(schema_id)))
            readers[schema_id] = avro.io.DatumReader(schema)
        return readers[schema_id].read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))

    return decode


def bench_codec(count: int, rounds: int) -> None:
    """Encode/decode throughput of the three ways; checks they agree first."""
    registry = EmbeddedRegistry()
    codec = Codec(registry)
    events = sample_events(count)
    values = [codec.encode(e) for e in events]
    plain, logical = _fastavro_decoder(registry, False), _fastavro_decoder(registry, True)
    reference = _avro_package_decoder(registry)
    assert [codec.decode(v) for v in values] == events == [plain(v) for v in values] == [logical(v) for v in values]
    rates = {
        "encode (ours)": _median_rate(lambda: [codec.encode(e) for e in events], count, rounds),
        "decode (ours, compiled reader)": _median_rate(lambda: [codec.decode(v) for v in values], count, rounds),
        "decode (fastavro, logical types off)": _median_rate(lambda: [plain(v) for v in values], count, rounds),
        "decode (fastavro, logical types on)": _median_rate(lambda: [logical(v) for v in values], count, rounds),
        "decode (avro package DatumReader, to dict)": _median_rate(
            lambda: [reference(v) for v in values], count, max(1, rounds // 2)
        ),
    }
    print(f"{count} mixed events, {rounds} rounds, medians:")
    for name, rate in rates.items():
        print(f"  {name:45s} {rate:>10,.0f} events/s  {1e6 / rate:6.2f} us/event")
    ours = rates["decode (ours, compiled reader)"]
    print(f"  ours / fastavro:         {ours / rates['decode (fastavro, logical types off)']:.2f}x")
    print(f"  ours / logical types on: {ours / rates['decode (fastavro, logical types on)']:.2f}x")
    print(f"  ours / avro package:     {ours / rates['decode (avro package DatumReader, to dict)']:.2f}x")


def bench_publish(count: int) -> None:
    """Publisher throughput (validate + encode + send, flushed) against the real broker."""
    from streams.publisher import Publisher
    from streams.settings import load_settings
    from streams.topics import ensure_topics

    settings = load_settings(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    events = sample_events(count, seed=11)
    with Publisher(settings) as publisher:
        publisher.publish(events[0])
        publisher.flush()  # metadata and connections warm
        start = time.perf_counter()
        for event in events:
            publisher.publish(event)
        publisher.flush()
        elapsed = time.perf_counter() - start
        counts = publisher.counts
    print(
        f"publish: {count:,} events in {elapsed:.2f} s = {count / elapsed:,.0f} events/s "
        f"(one process; sent {counts.sent:,}, failed {counts.failed}; prefix {settings.topic_prefix})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per codec round")
    parser.add_argument("--rounds", type=int, default=5, help="codec rounds (median reported)")
    parser.add_argument("--publish", action="store_true", help="also measure the publisher")
    parser.add_argument("--publish-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    bench_codec(args.events, args.rounds)
    if args.publish:
        bench_publish(args.publish_events)


if __name__ == "__main__":
    main()
