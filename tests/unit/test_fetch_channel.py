"""The channel fetches reach an agent by keeps its queue when flow resumes, so that a hand-over
waiting for room when a recovery or a rebalance ends is not left waiting for good (Faust's own
channels clear their queue then, without waking it)."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP, ChannelT

from streams.runtime.transport import FetchChannel, Fetched

TP0 = TP("clicks", 0)



def hand_over_across_a_resume(app: faust.App, channel: ChannelT[Fetched]) -> list[Fetched]:
    """Fill the agent's queue, start a hand-over that waits for room, suspend and resume flow
    (a recovery ends), then take items as the agent does: what it got within a second."""
    first, second = Fetched(TP0, [], 1), Fetched(TP0, [], 1)
    subscriber = channel.clone(is_iterator=True)  # as an agent's stream subscribes

    async def scenario() -> list[Fetched]:
        app.flow_control.resume()
        await channel.put(first)  # type: ignore[arg-type]
        waiting = asyncio.ensure_future(channel.put(second))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        app.flow_control.suspend()
        app.flow_control.resume()
        taken = []
        for _ in range(2):
            try:
                taken.append(await asyncio.wait_for(subscriber.__anext__(), 1))
            except TimeoutError:
                break
        waiting.cancel()
        return taken  # type: ignore[return-value]

    return app.loop.run_until_complete(scenario())


def test_a_hand_over_waiting_for_room_completes_after_flow_resumes(app: faust.App) -> None:
    assert len(hand_over_across_a_resume(app, FetchChannel(app, maxsize=1))) == 2


def test_faust_s_own_channel_would_leave_it_waiting(app: faust.App) -> None:
    """Why FetchChannel exists: the first item is cleared and the waiting put never completes."""
    assert hand_over_across_a_resume(app, app.channel(maxsize=1)) == []
