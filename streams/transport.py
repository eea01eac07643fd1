"""The Kafka transport the workers use: Faust's aiokafka transport with its consumer's
offset bookkeeping made safe for exactly-counted state.

Registered as the ``exact`` transport (entry point ``faust.transports``; broker URLs
``exact://host:port``). Two changes to ``faust.transport.consumer.Consumer``:

- No offset gaps. When a record arrives further than one offset past the last one read,
  Faust marks the range in between as acknowledged, for compacted or transactional topics.
  Our input topics are neither, and a "gap" appears only after Faust moved the read offset
  back (the seek at the end of changelog recovery, after partitions were already resumed):
  the range then holds records still being processed, so marking them acknowledged lets a
  commit pass records that a crash would lose, and their real acks become duplicates. Here
  a commit only ever covers offsets that were acknowledged one by one.
- ``_new_offset`` drops duplicate acknowledged offsets before looking for the committable
  run (duplicates stop Faust's ``consecutive_numbers``, and commits then crawl).
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka
from faust.types import TP


class Consumer(aiokafka.Consumer):
    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        return None

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)


class Transport(aiokafka.Transport):
    Consumer = Consumer
