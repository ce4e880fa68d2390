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
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cronlink.automations import ai_step, http_step, report_step, sync
from cronlink.automations.steps import KINDS, StepContext, StepModel, parse_steps
from cronlink.errors import StepError
from cronlink.loading import resolve
from cronlink.observe import tracing
from cronlink.records.automations import EventState

if TYPE_CHECKING:
    import aiohttp

    from cronlink.context import RunContext
    from cronlink.records.automations import Work

MAX_BACKOFF = timedelta(minutes=1)


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
            session=session, run=ctx, index=index, provider=work.provider,
        )  # fmt: skip
        try:
            with tracing.span("cronlink.step", _described(step, context)):
                done = await _execute(step, work.event.data, context)
            return context.scrubbed(done)
        except StepError as error:
            if not error.retryable or attempt == step.max_attempts:
                raise StepError(context.scrubbed(str(error)), retryable=False) from None
            wait = error.wait
        except Exception as error:
            if attempt == step.max_attempts:
                text = context.scrubbed(f"{type(error).__name__}: {error}")
                raise StepError(text) from None
            wait = 0.0
        backoff = min(MAX_BACKOFF, step.first_backoff * 2 ** (attempt - 1)).total_seconds()
        await asyncio.sleep(max(wait, random.uniform(backoff / 2, backoff)))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _described(step: StepModel, ctx: StepContext) -> dict[str, str | int]:
    return {
        "cronlink.automation": ctx.automation, "cronlink.step": ctx.step,
        "cronlink.step_kind": next(k for k in KINDS if getattr(step, k) is not None),
        "cronlink.event_id": ctx.event_id, "cronlink.attempt": ctx.attempt,
    }  # fmt: skip


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
    if step.ai is not None:
        return await ai_step.call(step.ai, event, ctx)
    if step.report is not None:
        return await report_step.call(step.report, event, ctx)
    assert step.call is not None
    function = resolve(step.call)
    result = function(event, ctx)
    if inspect.isawaitable(result):
        result = await result
    return result
