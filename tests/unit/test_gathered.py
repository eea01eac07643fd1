"""How an agent gathers fetches into batches (streams.runtime.agents.gathered): full batches at
once, a partial one after the wait, nothing lost or reordered when a wait times out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from faust.types import TP

from streams.runtime.agents import gathered
from streams.runtime.transport import Fetched
from streams.stages.records import InputRecord

TP0 = TP("clicks", 0)


def fetched(*offsets: int) -> Fetched:
    return Fetched(TP0, [InputRecord("clicks", 0, offset, b"k", b"v", 0) for offset in offsets], 1)


class Fetches:
    """An async iterator of fetches the test puts in, as a Faust stream over a channel."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Fetched] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[Fetched]:
        return self

    async def __anext__(self) -> Fetched:
        return await self.queue.get()


def offsets(batch: list[Fetched]) -> list[int]:
    return [record.offset for fetch in batch for record in fetch.records]


def test_a_batch_is_yielded_as_soon_as_it_holds_enough_records() -> None:
    async def scenario() -> None:
        fetches = Fetches()
        batches = gathered(fetches, max_records=3, max_wait_s=3600)
        for fetch in (fetched(0, 1), fetched(2, 3), fetched(4)):
            fetches.queue.put_nowait(fetch)
        assert offsets(await asyncio.wait_for(anext(batches), 1)) == [0, 1, 2, 3]
        await batches.aclose()

    asyncio.run(scenario())


def test_a_partial_batch_is_yielded_after_the_wait_and_later_fetches_are_kept() -> None:
    async def scenario() -> None:
        fetches = Fetches()
        batches = gathered(fetches, max_records=100, max_wait_s=0.05)
        fetches.queue.put_nowait(fetched(0))
        assert offsets(await asyncio.wait_for(anext(batches), 1)) == [0]
        next_batch = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.2)  # waits time out with no fetch: nothing is yielded empty
        assert not next_batch.done()
        fetches.queue.put_nowait(fetched(1, 2))
        fetches.queue.put_nowait(fetched(3))
        assert offsets(await asyncio.wait_for(next_batch, 1)) == [1, 2, 3]
        await batches.aclose()

    asyncio.run(scenario())
