"""Which partition owns a key's state."""

from __future__ import annotations

from streams_native import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """The partition that owns ``key``'s state: Kafka's murmur2 partitioner, as the Java client
    and kafka-python use, so their records need no re-routing. The hash is compiled
    (``native/src/murmur2.rs``): in Python it cost a few microseconds per key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
