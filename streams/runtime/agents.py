"""The pipeline's Faust agents: where the processing of every input record starts.

- ``profiles`` consumes clicks, shares, purchases, support tickets, records re-routed to their
  customer's partition and referral credits, and folds them into customer profiles, event-time
  buckets and per-minute totals (``streams.stages.profile_stage``); touches that name a share
  go on to the referral index, keyed by share.
- ``referrals`` consumes the referral index: it joins touches to the shares they came from
  and sends each sharer its credits (``streams.stages.referral_stage``).

An agent's items are not single records but a partition's fetched records
(``streams.runtime.transport.Fetched``), gathered into batches of about ``batch_max_events``:
Faust's per-item machinery then runs once per fetch, and the stages' per-batch work (one state
write per key, one send per partition) once per batch. Each agent's batches owe their offsets
to a checkpoint (``streams.runtime.checkpoint``), whose commits run as an app task beside them.
An error in an agent or a commit stops the worker (rather than restarting the agent, which
would drop the records it held): what was not committed is processed again on restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable

from faust.types import StreamT
from mode import CrashingSupervisor

from streams.runtime.app import Pipeline
from streams.runtime.runner import BatchRunner
from streams.runtime.transport import Fetched
from streams.settings import Settings


def register_agents(pipeline: Pipeline, settings: Settings, profile_runner: BatchRunner,
                    referral_runner: BatchRunner, seen_by_profiles: Callable[[list[Fetched]], None]) -> None:
    """Register the agents and their checkpoints' commit tasks; they run once the app starts.
    ``seen_by_profiles``: shown each batch of the profile agent before it is processed."""
    app = pipeline.app
    max_events = settings.batch_max_events
    max_wait_s = settings.batch_max_wait_ms / 1000

    @app.agent(pipeline.profile_fetches, name="profiles", supervisor_strategy=CrashingSupervisor)
    async def profiles(fetches: StreamT[Fetched]) -> None:
        """Events, re-routed records and referral credits -> customer profiles, buckets, minute
        totals and rows; referral touches -> the referral index (ProfileStage.process)."""
        async for batch in gathered(fetches, max_events, max_wait_s):
            seen_by_profiles(batch)
            await profile_runner.run_batch(batch)

    @app.agent(pipeline.referral_fetches, name="referrals", supervisor_strategy=CrashingSupervisor)
    async def referrals(fetches: StreamT[Fetched]) -> None:
        """Shares and touches keyed by share -> the share index, and credits to the sharers
        (ReferralStage.process)."""
        async for batch in gathered(fetches, max_events, max_wait_s):
            await referral_runner.run_batch(batch)

    poll_s = min(max_wait_s, settings.sink_max_wait_ms / 1000)

    @app.task
    async def commit_profiles() -> None:
        await profile_runner.checkpoint.run(poll_s)

    @app.task
    async def commit_referrals() -> None:
        await referral_runner.checkpoint.run(poll_s)


async def gathered(fetches: AsyncIterable[Fetched], max_records: int, max_wait_s: float
                   ) -> AsyncGenerator[list[Fetched], None]:
    """Fetches in batches: a batch is yielded once it holds ``max_records`` records or its
    first fetch has waited ``max_wait_s``, whichever comes first.

    The next fetch is awaited in a task of its own that a timeout does not cancel: cancelling
    a Faust stream's iteration would end it."""
    items = aiter(fetches)
    next_fetch: asyncio.Future[Fetched] | None = None
    batch: list[Fetched] = []
    records = 0
    deadline = 0.0
    try:
        while True:
            if next_fetch is None:
                next_fetch = asyncio.ensure_future(anext(items))
            timeout = max(0.0, deadline - time.monotonic()) if batch else None
            done, _ = await asyncio.wait((next_fetch,), timeout=timeout)
            if done:
                try:
                    fetched = next_fetch.result()
                except StopAsyncIteration:
                    return
                finally:
                    next_fetch = None
                if not batch:
                    deadline = time.monotonic() + max_wait_s
                batch.append(fetched)
                records += len(fetched.records)
            if batch and (records >= max_records or time.monotonic() >= deadline):
                yield batch
                batch, records = [], 0
    finally:
        if next_fetch is not None:
            next_fetch.cancel()
