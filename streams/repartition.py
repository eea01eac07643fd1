"""Records of the repartition topic, where input records that arrived on a partition other
than their key's are re-routed (see ``streams.stages``). Pure: no Kafka, no Faust.

Two kinds, told apart by their first header:

- a re-routed record: the original key, value and timestamp (ingest time), and its origin
  (topic, partition, offset), by which the owning partition admits it exactly;
- a watermark from an origin partition of an input topic: "every record of mine with an
  ingest time up to this record's timestamp that belongs to you has been re-routed". A
  partition's per-minute totals are final only once every lane has passed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from streams.errors import DecodeError

RECORD = b"record"
WATERMARK = b"watermark"


class Origin(NamedTuple):
    """Where a repartition record comes from; ``offset`` is -1 for a watermark."""

    watermark: bool
    topic: str
    partition: int
    offset: int


def origin_headers(topic: str, partition: int, offset: int | None) -> tuple[tuple[str, bytes], ...]:
    """Headers of a re-routed record (``offset`` given) or of a watermark (None)."""
    return (("kind", RECORD if offset is not None else WATERMARK),
            ("origin_topic", topic.encode()),
            ("origin_partition", str(partition).encode()),
            ("origin_offset", str(-1 if offset is None else offset).encode()))


def read_origin(headers: Sequence[tuple[str, bytes]]) -> Origin:
    """The origin a repartition record carries; :class:`DecodeError` when it carries none
    (only the pipeline writes this topic, so that is a record someone else put there)."""
    found = dict(headers)
    try:
        kind = found["kind"]
        if kind not in (RECORD, WATERMARK):
            raise ValueError(kind)
        return Origin(kind == WATERMARK, found["origin_topic"].decode(),
                      int(found["origin_partition"]), int(found["origin_offset"]))
    except (KeyError, ValueError, UnicodeDecodeError) as error:
        raise DecodeError("bad_origin", f"repartition record without a valid origin ({error!r})") from None
