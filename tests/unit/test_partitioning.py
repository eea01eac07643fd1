"""Which partition owns a key: Kafka's murmur2 (compiled, native/src/murmur2.rs), as the Java client and
kafka-python compute it."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from streams_native import murmur2

from streams.stages.partitioning import partition_for

# Apache Kafka's UtilsTest.testMurmur2: the Java client's values (signed 32-bit).
JAVA_CLIENT = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_CLIENT.items())
def test_murmur2_gives_the_java_client_s_values(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_murmur2_equals_kafka_python_s_for_any_bytes() -> None:
    rng = random.Random(7)
    for length in range(65):
        for _ in range(20):
            data = rng.randbytes(length)
            assert murmur2(data) == kafka_python_murmur2(data), data


def test_a_key_s_partition_is_its_positive_murmur2_modulo_the_partitions() -> None:
    assert partition_for(b"21", 4) == (-973932308 & 0x7FFFFFFF) % 4
    assert {partition_for(f"cust-{n}".encode(), 4) for n in range(100)} == {0, 1, 2, 3}
