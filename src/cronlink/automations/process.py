"""Run an event's steps in order, each retried on its own, checkpointing after each one.

A step that fails for good sends the event to the dead-letter list with its error and the
index of the step; a replay starts there, with the outputs of the steps before it. A run
killed mid-event is retried as the same run, which takes back its event and goes on from
the last checkpoint.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cronlink.automations import http_step, sync
from cronlink.automations.model import EventState
from cronlink.automations.steps import StepModel, parse_steps
from cronlink.child import resolve
from cronlink.connections.tokens import scrub
from cronlink.errors import StepError

if TYPE_CHECKING:
    import aiohttp

    from cronlink.automations.model import Work
    from cronlink.connections.model import Credentials
    from cronlink.context import RunContext, RunLog

MAX_BACKOFF = timedelta(minutes=1)
MAX_WAIT = 30.0


@dataclass(kw_only=True, slots=True)
class StepContext:
    """What a step receives beside the event: `function(event, ctx)`."""

    event_id: int
    automation: str
    step: str
    attempt: int
    idempotency_key: str
    """The same for every attempt of this step in this run: pass it to the API you call."""
    outputs: dict[str, Any]
    """What the earlier steps returned, by step name."""
    params: dict[str, Any]
    connection_id: int
    base_url: str
    log: RunLog
    session: aiohttp.ClientSession
    index: int
    """The step's position in the automation."""
    run: RunContext = field(repr=False)
    tokens_seen: list[str] = field(default_factory=list, repr=False)
    """Taken out of any error the step raises before it is stored or logged."""

    async def credentials(self) -> Credentials:
        got = await self.run.connections.credentials(self.connection_id)
        self.tokens_seen.append(got.access_token)
        return got

    async def wait_for_budget(self) -> None:
        """Wait out a short pause of the connection's account (another job got a 429);
        a long one fails this attempt, to be retried after it."""
        left = await self.run.automations.throttled_for(self.connection_id)
        if left > MAX_WAIT:
            raise StepError(f"the account is throttled for {left:.0f}s more", wait=left)
        if left > 0:
            await asyncio.sleep(left)

    async def throttle(self, seconds: float) -> None:
        """Pause every call to the connection's account (the provider answered 429)."""
        await self.run.automations.throttle(self.connection_id, seconds)

    async def checkpoint(self, progress: Any) -> None:
        """Save a long step's progress: a killed run resumes from it (`sync` does this)."""
        self.outputs[self.step] = {"checkpoint": progress}
        saved = await self.run.automations.save(
            self.event_id, self.run.run_id, EventState.RUNNING.value, self.index,
            self.outputs, None,
        )  # fmt: skip
        if not saved:
            raise StepError("the event was taken over by another run", retryable=False)


async def run_event(work: Work, ctx: RunContext, session: aiohttp.ClientSession) -> bool:
    """Run `work`'s remaining steps; True when the event is done, False if dead-lettered."""
    event, automation = work.event, work.automation
    steps = parse_steps(automation.steps)
    outputs = dict(event.outputs)
    access = ctx.automations
    for index in range(event.step, len(steps)):
        step = steps[index]
        try:
            outputs[step.name] = await _attempts(step, index, work, outputs, ctx, session)
        except StepError as error:
            ctx.log.warning("event %d: step %s failed for good: %s", event.id, step.name, error)
            message = f"step {index} ({step.name}): {error}"
            await access.save(
                event.id, ctx.run_id, EventState.DEAD_LETTER.value, index, outputs, message
            )
            return False
        state = EventState.DONE if index == len(steps) - 1 else EventState.RUNNING
        if not await access.save(event.id, ctx.run_id, state.value, index + 1, outputs, None):
            # Another run holds the event now (this one was given up for lost): it goes
            # on from the last checkpoint; this run must not run another step of it.
            ctx.log.warning("event %d: taken over by another run; leaving it", event.id)
            return True
    return True


async def _attempts(
    step: StepModel,
    index: int,
    work: Work,
    outputs: dict[str, Any],
    ctx: RunContext,
    session: aiohttp.ClientSession,
) -> Any:
    for attempt in range(1, step.max_attempts + 1):
        context = StepContext(
            event_id=work.event.id, automation=work.automation.name, step=step.name,
            attempt=attempt, idempotency_key=_key(work, step),
            outputs=outputs, params=work.automation.params,
            connection_id=work.automation.connection_id, base_url=work.base_url, log=ctx.log,
            session=session, run=ctx, index=index,
        )  # fmt: skip
        try:
            return await _execute(step, work.event.data, context)
        except StepError as error:
            if not error.retryable or attempt == step.max_attempts:
                raise StepError(scrub(str(error), context.tokens_seen), retryable=False) from None
            wait = error.wait
        except Exception as error:
            if attempt == step.max_attempts:
                text = scrub(f"{type(error).__name__}: {error}", context.tokens_seen)
                raise StepError(text) from None
            wait = 0.0
        backoff = min(MAX_BACKOFF, step.first_backoff * 2 ** (attempt - 1)).total_seconds()
        await asyncio.sleep(max(wait, random.uniform(backoff / 2, backoff)))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _key(work: Work, step: StepModel) -> str:
    """The same for every attempt of the step, in every run of the event, and in the
    replay of a dead letter (which resumes it); new for a replay of a done event."""
    event = work.event
    return f"cronlink-automation-{work.automation.id}-event-{event.id}.{event.replays}:{step.name}"


async def _execute(step: StepModel, event: Any, ctx: StepContext) -> Any:
    if step.http is not None:
        return await http_step.call(step.http, event, ctx)
    if step.sync is not None:
        return await sync.copy(step.sync, ctx)
    assert step.call is not None
    function = resolve(step.call)
    result = function(event, ctx)
    if inspect.isawaitable(result):
        result = await result
    return result
