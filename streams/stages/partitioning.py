"""Which partition owns a key's state."""

from __future__ import annotations

import functools
import struct

_M = 0x5BD1E995  # murmur2's mixing constant
_MASK = 0xFFFFFFFF


@functools.lru_cache(maxsize=1 << 18)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition that owns ``key``'s state: Kafka's murmur2 partitioner, as the Java client
    and kafka-python use, so their records need no re-routing.

    Cached: murmur2 in Python costs a few microseconds, and customer, share and sharer ids
    recur."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit
    int: kafka-python's implementation, with the 4-byte words read by ``struct`` and fewer
    masks (about half its time; ``tests/unit/test_partitioning.py`` holds the two equal)."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)
