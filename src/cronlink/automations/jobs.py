"""The built-in automation jobs, added with the connection jobs:

- `poll-triggers` (light, every minute): polls automations as they fall due for most of
  the minute; new events start `process-automation` runs in the commit that records them.
- `process-automation` (heavy, one run per event): processes the automation's events in
  order while it holds one of the automation's slots.
- `process-automations` (heavy, every 15 minutes): starts scheduled automations, settles
  events whose run ended without them, forgets old event keys, flags stalled triggers,
  and processes whatever is pending, several automations at once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cronlink.automations.process import run_event
from cronlink.automations.service import Automations
from cronlink.errors import StepError
from cronlink.http_client import new_session
from cronlink.plurals import counted

if TYPE_CHECKING:
    from cronlink.context import RunContext

POLL_TRIGGERS = "poll-triggers"
PROCESS_AUTOMATION = "process-automation"
PROCESS_AUTOMATIONS = "process-automations"
POLL_WINDOW = timedelta(seconds=60)
"""The longest a poll-triggers run polls (until its schedule fires next, at most this);
its 70 s timeout leaves the last batch 5 s more and its commit. The next run starts while
that batch ends: two pollers never take the same automation (its lease)."""
PENDING_BATCH = 100


async def poll_triggers(ctx: RunContext) -> dict[str, int]:
    service = ctx.automations
    assert isinstance(service, Automations), "poll-triggers runs on the light tier"
    window = service.poll_window(service.clock.now(), POLL_WINDOW)
    tally = await service.poll_for(window, ctx.stopping)
    stalled = await service.check_polls(service.clock.now())
    ctx.log.info(
        "%s (%d unchanged, %d failed), %s",
        counted(tally.polls, "poll"), tally.not_modified, tally.failed,
        counted(tally.events, "new event"),
    )  # fmt: skip
    return {
        "polls": tally.polls, "failed": tally.failed, "events": tally.events,
        "not_modified": tally.not_modified, "stalled": len(stalled),
    }  # fmt: skip


async def process_automation(ctx: RunContext) -> dict[str, Any]:
    """Process the events of the automation in the payload while this run may."""
    automation_id = int(ctx.payload["automation_id"])
    done, failed = await _drain(ctx, automation_id)
    if failed:
        raise StepError(f"events sent to the dead-letter list: {failed}", retryable=False)
    return {"automation_id": automation_id, "done": done}


async def process_automations(ctx: RunContext, concurrency: int = 8) -> dict[str, Any]:
    counts = await ctx.automations.sweep()
    gate = asyncio.Semaphore(concurrency)

    async def one(automation_id: int) -> tuple[list[int], list[int]]:
        async with gate:
            return await _drain(ctx, automation_id)

    waiting = await ctx.automations.pending(PENDING_BATCH, ctx.run_id)
    drained = await asyncio.gather(*(one(a) for a in waiting))
    counts["done"] = sum(len(done) for done, _ in drained)
    counts["dead_letter"] += sum(len(failed) for _, failed in drained)
    ctx.log.info("automations: %s", counts)
    return counts


async def _drain(ctx: RunContext, automation_id: int) -> tuple[list[int], list[int]]:
    done: list[int] = []
    failed: list[int] = []
    session = new_session(ctx.egress)
    try:
        while (work := await ctx.automations.take(automation_id, ctx.run_id)) is not None:
            finished = await run_event(work, ctx, session)
            (done if finished else failed).append(work.event.id)
    finally:
        await session.close()
    return done, failed
