"""An automation's steps as data: a Python callable (`call`), an HTTP request through the
connection (`http`), a bulk copy (`sync`), a chat model's answer (`ai`) or a report
rendered and delivered (`report`), each retried on its own; and `StepContext`, what a step
is given when it runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cronlink.ai.validate import check_schema
from cronlink.connections.account import Account, Answer
from cronlink.durations import parse_duration
from cronlink.errors import (
    AccountPausedError,
    ConfigError,
    CronlinkError,
    StepError,
    TokenUnavailableError,
)
from cronlink.http_client import as_refusal
from cronlink.records.automations import EventState
from cronlink.reports.spec import ReportSpec
from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from cronlink.context import RunContext, RunLog
    from cronlink.records.connections import Credentials


KINDS = ("call", "http", "sync", "ai", "report")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HttpStep(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    """A path on the connection's provider (`/api/…`), or a full URL."""
    connection: bool = True
    """Send the connection's access token (`Authorization: Bearer …`)."""
    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    """A JSON body; strings in it are templates: `{event.subject}`, `{steps.NAME.field}`."""


class SyncSource(_Strict):
    path: str
    items: str = "records"
    next: str = "next_page_token"
    """Where the next page's token is in an answer (absent: the last page)."""
    param: str = "page_token"
    page_size: int = Field(default=500, ge=1, le=10_000)


class SyncDestination(_Strict):
    path: str
    batch_size: int = Field(default=500, ge=1, le=10_000)
    rejected: str = "rejected"
    """Where the per-record rejections (`{index, error}`) are in an answer."""


class SyncStep(_Strict):
    source: SyncSource
    destination: SyncDestination
    transform: str | None = None
    """`module:function` applied to each record; a record it raises on is set aside."""


class AiStep(_Strict):
    model: str
    """A model declared in cronlink.toml (`[ai.models.NAME]`)."""
    system: str | None = None
    prompt: str
    """Templates like an `http` step's strings: `{event.subject}`, `{steps.NAME.field}`."""
    answer_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    """A JSON Schema: the answer is JSON checked against it, and is the step's output
    (without one, the answer's text is)."""
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("answer_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value


class ReportStep(ReportSpec):
    """A report rendered from the event and the earlier steps' outputs, then delivered
    (`cronlink.reports`): its templates see `event`, `steps`, `params` and `now`."""


class StepModel(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    call: str | None = None
    """`module:function`, called as `function(event, ctx)`; may be async."""
    http: HttpStep | None = None
    sync: SyncStep | None = None
    ai: AiStep | None = None
    report: ReportStep | None = None
    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff: str = "1s"
    """The first retry's delay; it doubles each attempt, up to a minute."""

    @field_validator("backoff")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("call", "transform", check_fields=False)
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError(f"{value!r} must look like package.module:function")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> StepModel:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'call', 'http', 'sync', 'ai' or 'report'")
        return self

    @property
    def first_backoff(self) -> timedelta:
        return parse_duration(self.backoff)


def parse_steps(
    steps: list[dict[str, Any]], models: Collection[str] | None = None
) -> list[StepModel]:
    """Checked steps; errors name the step and the key (`steps[1] (notify).http.url`).
    `models`: the chat models declared, which `ai` steps must name (unchecked if None)."""
    if not steps:
        raise ConfigError("an automation needs at least one step")
    parsed: list[StepModel] = []
    names: set[str] = set()
    for index, step in enumerate(steps):
        name = step.get("name") if isinstance(step, dict) else None
        label = f"steps[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        try:
            model = StepModel.model_validate(step)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{label}{'.' + key if key else ''}: {message}") from None
        if model.name in names:
            raise ConfigError(f"{label}: another step is named {model.name!r}")
        if model.ai is not None and models is not None and model.ai.model not in models:
            declared = ", ".join(sorted(models)) or "none"
            raise ConfigError(
                f"{label}.ai.model: {model.ai.model!r} is not declared: add "
                f"[ai.models.{model.ai.model}] to cronlink.toml (declared: {declared})"
            )
        names.add(model.name)
        parsed.append(model)
    return parsed


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
                await self._wait_out_pause(account)
                answer = await account.request(
                    self.session, method, url, headers=headers, json=json, within=within
                )
                self.tokens_seen.append(account.credentials.access_token)
            else:
                answer = await _plain(self.session, method, url, headers, json, within)
        except (AccountPausedError, TokenUnavailableError) as error:
            raise StepError(f"{method}: {error}", wait=self._seconds_until(error.until)) from None
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

    async def _wait_out_pause(self, account: Account) -> None:
        """Wait out a short pause of the account (another job got a 429); a long one fails
        this attempt, to be retried after it."""
        try:
            await account.check()
        except AccountPausedError as error:
            left = self._seconds_until(error.until)
            if left > MAX_WAIT:
                raise
            await asyncio.sleep(left)
            await account.check()

    def _seconds_until(self, until: datetime | None) -> float:
        if until is None:
            return 0.0
        return max(0.0, (until - self.run.clock.now()).total_seconds())

    async def checkpoint(self, progress: Any) -> None:
        """Save a long step's progress: a killed run resumes from it (`sync` does this)."""
        self.outputs[self.step] = {"checkpoint": progress}
        saved = await self.run.automations.save(
            self.event_id, self.run.run_id, EventState.RUNNING.value, self.index,
            self.outputs, None,
        )  # fmt: skip
        if not saved:
            raise StepError("the event was taken over by another run", retryable=False)


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
