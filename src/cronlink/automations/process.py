"""Run an event's steps in order, each retried on its own, checkpointing after each one.

A step that fails for good sends the event to the dead-letter list with its error and the
index of the step; a replay starts there, with the outputs of the steps before it. A run
killed mid-event is retried as the same run, which takes back its event and goes on from
the last checkpoint.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from multidict import CIMultiDict

from cronlink.automations import http_step, sync
from cronlink.automations.model import EventState
from cronlink.automations.steps import StepModel, parse_steps
from cronlink.connections.account import Account, Answer
from cronlink.errors import AccountPausedError, CronlinkError, StepError, TokenUnavailableError
from cronlink.http_client import as_refusal
from cronlink.loading import resolve
from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from cronlink.automations.model import Work
    from cronlink.connections.model import Credentials
    from cronlink.context import RunContext, RunLog

MAX_BACKOFF = timedelta(minutes=1)
MAX_WAIT = 30.0
"""Seconds of an account's pause a step waits out; a longer one fails the attempt."""
REQUEST_TIMEOUT = 30.0
RETRYABLE = frozenset({408, 425, 429})
ANSWER_CHARS = 200


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
    """Taken out of the step's output and of any error it raises before either is stored
    or logged (`scrubbed`)."""

    def scrubbed(self, value: Any) -> Any:
        """`value` (a text, or an output) without the tokens this step used nor the
        secrets cronlink is given, in any form a provider may have quoted them in."""
        return Scrubber([*configured(os.environ), *self.tokens_seen]).value(value)

    async def credentials(self) -> Credentials:
        got = await self.run.connections.credentials(self.connection_id)
        self.tokens_seen.append(got.access_token)
        return got

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        connection: bool = True,
        within: float = REQUEST_TIMEOUT,
    ) -> Answer:
        """One request, through the connection's account unless not `connection` (see
        `connections.account`: a short pause is waited out, a refused token renewed once,
        a 429 pauses the account for every job). An answer of 400 or more, or no answer,
        is a `StepError` (retryable for 408, 425, 429, 5xx and network errors) whose text
        never holds the token, nor the URL (its query may hold a secret)."""
        try:
            if connection:
                account = Account(self.run.connections, await self.credentials())
                await _wait_out_pause(account)
                answer = await account.request(
                    self.session, method, url, headers=headers, json=json, within=within
                )
                self.tokens_seen.append(account.credentials.access_token)
            else:
                answer = await _plain(self.session, method, url, headers, json, within)
        except (AccountPausedError, TokenUnavailableError) as error:
            raise StepError(f"{method}: {error}", wait=_seconds_until(error.until)) from None
        except CronlinkError as error:
            raise StepError(f"{method}: {error}", retryable=False) from None
        except aiohttp.ClientError as error:
            refusal = as_refusal(error)
            if refusal is not None:
                raise StepError(f"{method}: {refusal}", retryable=False) from None
            raise StepError(f"{method} failed: {type(error).__name__}") from None
        except TimeoutError as error:
            raise StepError(f"{method} failed: {type(error).__name__}") from None
        if answer.status >= 400:
            text = self.scrubbed(answer.body.decode(errors="replace"))
            raise StepError(
                f"{method} answered HTTP {answer.status}: {text[:ANSWER_CHARS]}",
                retryable=answer.status in RETRYABLE or answer.status >= 500,
                wait=answer.retry_after or 0.0,
            )
        return answer

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
            return context.scrubbed(await _execute(step, work.event.data, context))
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


async def _wait_out_pause(account: Account) -> None:
    """Wait out a short pause of the account (another job got a 429); a long one fails
    this attempt, to be retried after it."""
    try:
        await account.check()
    except AccountPausedError as error:
        left = _seconds_until(error.until)
        if left > MAX_WAIT:
            raise
        await asyncio.sleep(left)
        await account.check()


async def _plain(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    json: Any,
    within: float,
) -> Answer:
    async with asyncio.timeout(within):
        async with session.request(method, url, headers=headers, json=json) as response:
            body = await response.read()
            return Answer(status=response.status, headers=CIMultiDict(response.headers), body=body)


def _seconds_until(until: datetime | None) -> float:
    return 0.0 if until is None else max(0.0, (until - datetime.now(UTC)).total_seconds())


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
