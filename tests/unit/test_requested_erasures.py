"""Reading the erasure requests at start-up: the erasures topic's partitions are asked again
while Kafka does not know them yet (a topic created a moment ago), and a topic Kafka never
knows fails the start with a message that says what to do."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from streams.errors import StreamsError
from streams.runtime import requested_erasures
from streams.settings import Settings

SETTINGS = Settings()


class Metadata:
    """A consumer whose metadata knows the topic only from the ``known_from``-th question on."""

    def __init__(self, known_from: int) -> None:
        self.known_from = known_from
        self.asked = 0

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        assert topic == SETTINGS.erasures_topic
        self.asked += 1
        return {0, 1, 2, 3} if self.asked >= self.known_from else None


def partitions(consumer: Metadata, deadline: float) -> set[int]:
    return requested_erasures._partitions(cast(Any, consumer), SETTINGS, deadline)


def test_partitions_not_known_yet_are_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requested_erasures, "PARTITIONS_RETRY_S", 0.0)
    consumer = Metadata(known_from=3)
    assert partitions(consumer, time.monotonic() + 60) == {0, 1, 2, 3}
    assert consumer.asked == 3


def test_a_topic_kafka_never_knows_fails_the_start_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requested_erasures, "PARTITIONS_RETRY_S", 0.0)
    with pytest.raises(StreamsError, match=rf"no partition of {SETTINGS.erasures_topic} .*streams topics"):
        partitions(Metadata(known_from=10**9), time.monotonic() - 1)
