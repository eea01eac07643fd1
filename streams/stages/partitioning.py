"""Which partition owns a key's state."""

from __future__ import annotations

import functools

from kafka.partitioner.default import murmur2


@functools.lru_cache(maxsize=1 << 18)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition that owns ``key``'s state: Kafka's murmur2 partitioner, as the Java client
    and kafka-python use, so their records need no re-routing.

    Cached: kafka-python's murmur2 is pure Python (~3 us), and customer, share and sharer ids
    recur."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
