"""The Kafka transport the workers use: Faust's aiokafka transport with its consumer's
offset bookkeeping made safe for exactly-counted state.

Registered as the ``exact`` transport (entry point ``faust.transports``; broker URLs
``exact://host:port``). Two changes, both to ``faust.transport.consumer.Consumer``:

- ``perform_seek`` runs when changelog recovery completes, but Faust resumes the source
  partitions *before* it, so records may already have been delivered to agents. Faust then
  moves the read offset back to the committed offset; the next record looks like a hole,
  and ``_add_gap`` marks a range as acknowledged that includes records still being
  processed (a crash then loses them) and offsets acked again later (duplicates stop
  ``consecutive_numbers``, and commits crawl one offset at a time). Here the read offset never
  moves back past a record already delivered: aiokafka re-fetches those records from the
  committed offset, and the drain loop drops them as already read.
- ``_new_offset`` drops duplicate acked offsets before looking for the committable run.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka
from faust.types import TP


class Consumer(aiokafka.Consumer):
    async def perform_seek(self) -> None:
        delivered = {tp: offset for tp, offset in self._read_offset.items() if offset is not None}
        await super().perform_seek()
        for tp, offset in delivered.items():
            current = self._read_offset.get(tp)
            if current is None or current < offset:
                self._read_offset[tp] = offset

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)


class Transport(aiokafka.Transport):
    Consumer = Consumer
