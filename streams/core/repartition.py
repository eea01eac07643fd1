"""Records of the repartition topic, where input records that arrived on a partition other
than their key's are re-routed (see ``streams.stages``). Pure: no Kafka, no Faust.

Three kinds, told apart by their ``kind`` header:

- a re-routed record: the original key, value and timestamp (ingest time), and its origin
  (topic, partition, offset), by which the owning partition admits it exactly;
- forwarded events: accepted events of anonymous ids identified as one customer, sent by
  their partition to the customer's in one record per batch (keyed by the customer), each
  with its origin topic and offset, its lane on the customer's side, its ingest time and its
  value (``streams.core.identity``);
- a watermark from an origin partition: its value maps each input topic to an ingest time,
  meaning "every record of mine up to this ingest time that belongs to you has been
  re-routed". A partition's per-minute totals are final only once every lane has passed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import orjson

from streams.errors import DecodeError

RECORD = b"record"
FORWARDED = b"forwarded"
WATERMARK = b"watermark"


class Origin(NamedTuple):
    """Where a repartition record comes from; a watermark has no topic and no offset, and
    forwarded events carry their origins in the value (:func:`read_forwarded`)."""

    watermark: bool
    topic: str
    partition: int
    offset: int
    forwarded: bool = False


class ForwardedEvent(NamedTuple):
    topic: str
    offset: int
    lane: str  # the customer's lane for it (streams.core.identity.forwarded_lane)
    ingest_ms: int
    value: bytes


def rerouted_headers(topic: str, partition: int, offset: int) -> tuple[tuple[str, bytes], ...]:
    return (("kind", RECORD), ("origin_topic", topic.encode()),
            ("origin_partition", str(partition).encode()), ("origin_offset", str(offset).encode()))


FORWARDED_HEADERS = (("kind", FORWARDED),)


def forwarded_value(events: Sequence[Sequence[object]]) -> bytes:
    """Events as ``[topic, offset, lane, ingest_ms, value as latin-1 text]`` (their kept form)."""
    return orjson.dumps(events)


def read_forwarded(value: bytes | None) -> list[ForwardedEvent]:
    """The events a forwarded record carries; :class:`DecodeError` when it is not one."""
    try:
        return [ForwardedEvent(topic, offset, lane, ingest_ms, text.encode("latin-1"))
                for topic, offset, lane, ingest_ms, text in orjson.loads(value or b"")]
    except (ValueError, TypeError, AttributeError, UnicodeEncodeError) as error:
        raise DecodeError("bad_origin", f"forwarded record without events ({error})") from None


def watermark_headers(partition: int) -> tuple[tuple[str, bytes], ...]:
    return (("kind", WATERMARK), ("origin_partition", str(partition).encode()))


def watermark_value(progress: Mapping[str, int]) -> bytes:
    """Input topic -> ingest time (epoch ms) the origin partition has re-routed up to."""
    return orjson.dumps(dict(progress))


def read_origin(headers: Sequence[tuple[str, bytes]]) -> Origin:
    """The origin a repartition record carries; :class:`DecodeError` when it carries none
    (only the pipeline writes this topic, so that is a record someone else put there)."""
    found = dict(headers)
    try:
        if found["kind"] == FORWARDED:
            return Origin(False, "", -1, -1, forwarded=True)
        partition = int(found["origin_partition"])
        if found["kind"] == WATERMARK:
            return Origin(True, "", partition, -1)
        if found["kind"] != RECORD:
            raise ValueError(found["kind"])
        return Origin(False, found["origin_topic"].decode(), partition, int(found["origin_offset"]))
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise DecodeError("bad_origin", f"repartition record without a valid origin ({error!r})") from None


def read_watermark(value: bytes | None) -> dict[str, int]:
    """The progress a watermark carries; :class:`DecodeError` when it is not one."""
    try:
        progress = orjson.loads(value or b"")
        if not isinstance(progress, dict) or not all(isinstance(v, int) for v in progress.values()):
            raise ValueError("not a map of topic to epoch ms")
        return progress
    except ValueError as error:
        raise DecodeError("bad_origin", f"watermark without progress ({error})") from None
