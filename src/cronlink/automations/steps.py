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
from cronlink.connections.names import Ref, problem
from cronlink.durations import parse_duration
from cronlink.errors import (
    AccountPausedError,
    ConfigError,
    ConnectionNotFoundError,
    ConnectionUnusableError,
    CronlinkError,
    StepError,
    TokenUnavailableError,
)
from cronlink.http_client import as_refusal
from cronlink.records.automations import EventState
from cronlink.records.connections import Link
from cronlink.reports.spec import ReportSpec
from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from cronlink.context import RunContext, RunLog
    from cronlink.records.connections import Credentials


KINDS = ("call", "http", "sync", "ai", "report")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ref(value: bool | Ref) -> bool | Ref:
    """A step's `connection`: true, false, a connection's id (an integer) or its name."""
    if isinstance(value, str):
        wrong = problem(value)
        if wrong is not None:
            raise ValueError(wrong)
    elif not isinstance(value, bool) and value < 1:
        raise ValueError(f"{value} is not a connection id")
    return value


class HttpStep(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    """A path on the connection's provider (`/api/…`), or a full URL."""
    connection: bool | int | str = True
    """Which connection's access token is sent (`Authorization: Bearer …`), and whose
    provider a path goes to: true for the automation's own, a name or an id for another
    of its owner's, false for none."""

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: bool | Ref) -> bool | Ref:
        return _ref(value)

    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    """A JSON body; strings in it are templates: `{event.subject}`, `{steps.NAME.field}`."""


class _SyncEnd(_Strict):
    connection: bool | int | str = True
    """Which connection the records are read (source) or written (destination) through:
    true for the automation's own, a name or an id for another of its owner's."""

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: bool | Ref) -> bool | Ref:
        if value is False:
            raise ValueError("a sync goes through a connection: give true, a name or an id")
        return _ref(value)


class SyncSource(_SyncEnd):
    path: str
    items: str = "records"
    next: str = "next_page_token"
    """Where the next page's token is in an answer (absent: the last page)."""
    param: str = "page_token"
    page_size: int = Field(default=500, ge=1, le=10_000)


class SyncDestination(_SyncEnd):
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
    connection: int | str | None = None
    """A connection of the automation's owner (name or id) whose access token is sent to
    the model instead of the model's API key: a model reached through an OAuth grant."""
    excerpt: int = Field(default=0, ge=0, le=2000)
    """Characters of the prompt and of the answer kept in the run's log, secrets removed
    (0: none)."""

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: Ref | None) -> Ref | None:
        return None if value is None else _ref(value)

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

    def connections(self) -> list[tuple[str, Ref]]:
        """The connections the step names (beside the automation's own), each with the
        key that names it (`sync.destination.connection`)."""
        named = []
        if self.http is not None:
            named.append(("http.connection", self.http.connection))
        if self.sync is not None:
            named.append(("sync.source.connection", self.sync.source.connection))
            named.append(("sync.destination.connection", self.sync.destination.connection))
        if self.ai is not None and self.ai.connection is not None:
            named.append(("ai.connection", self.ai.connection))
        return [(key, ref) for key, ref in named if not isinstance(ref, bool)]


def label(index: int, name: str | None) -> str:
    """How errors name a step: `steps[1] (push)`."""
    return f"steps[{index}]" + (f" ({name})" if isinstance(name, str) else "")


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
        where = label(index, step.get("name") if isinstance(step, dict) else None)
        try:
            model = StepModel.model_validate(step)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{where}{'.' + key if key else ''}: {message}") from None
        if model.name in names:
            raise ConfigError(f"{where}: another step is named {model.name!r}")
        if model.ai is not None and models is not None and model.ai.model not in models:
            declared = ", ".join(sorted(models)) or "none"
            raise ConfigError(
                f"{where}.ai.model: {model.ai.model!r} is not declared: add "
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
    """The automation's own connection (its trigger's)."""
    base_url: str
    """Its provider's base URL."""
    log: RunLog
    session: aiohttp.ClientSession
    index: int
    """The step's position in the automation."""
    run: RunContext = field(repr=False)
    provider: str = ""
    """The provider of the automation's own connection."""
    tokens_seen: list[str] = field(default_factory=list, repr=False)
    """Taken out of the step's output and of any error it raises before either is stored
    or logged (`scrubbed`)."""
    _links: dict[Ref, Link] = field(default_factory=dict, repr=False)
    _used: set[int] = field(default_factory=set, repr=False)

    def scrubbed(self, value: Any) -> Any:
        """`value` (a text, or an output) without the tokens this step used nor the
        secrets cronlink is given, in any form a provider may have quoted them in."""
        return Scrubber([*configured(os.environ), *self.tokens_seen]).value(value)

    async def link(self, connection: bool | Ref, key: str = "connection") -> Link | None:
        """The connection a step's `connection` (at `key`) means: the automation's own
        (true), none (false), or another of its owner's by name or id, looked up once per
        attempt, so that one deleted, given to someone else, disabled or needing its owner
        to reconnect since the automation was added fails the step for good, naming it."""
        if connection is False:
            return None
        if connection is True:
            return Link(
                connection_id=self.connection_id, name=None, provider=self.provider,
                base_url=self.base_url,
            )  # fmt: skip
        found = self._links.get(connection)
        if found is None:
            try:
                found = await self.run.connections.resolve(connection, self.connection_id)
            except (ConnectionNotFoundError, ConnectionUnusableError) as error:
                raise StepError(f"{key}: {error}", retryable=False) from None
            self._links[connection] = found
        return found

    async def credentials(self, connection: Ref | None = None) -> Credentials:
        """A valid token of the automation's own connection, or of the one `connection`
        names (another of its owner's)."""
        chosen = await self.link(True if connection is None else connection)
        assert chosen is not None
        return await self._credentials(chosen.connection_id)

    async def _credentials(self, connection_id: int) -> Credentials:
        got = await self.run.connections.credentials(connection_id)
        self.tokens_seen.append(got.access_token)
        return got

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        connection: bool | Ref = True,
        within: float = REQUEST_TIMEOUT,
    ) -> Answer:
        """One request, through the account of the automation's own connection, of the
        one `connection` names (another of its owner's), or of none (false) (see
        `connections.account`: a short pause is waited out, a refused token renewed once,
        a 429 pauses that account for every job; an answer under 400 marks it used). An
        answer of 400 or more, or no answer, is a `StepError` (retryable for 408, 425,
        429, 5xx and network errors) whose text never holds the token, nor the URL (its
        query may hold a secret)."""
        chosen = await self.link(connection)
        try:
            if chosen is not None:
                credentials = await self._credentials(chosen.connection_id)
                account = Account(self.run.connections, credentials)
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
        if chosen is not None and chosen.connection_id not in self._used:
            # Once per step and connection: a sync's thousand pages are one use.
            await self.run.connections.used(chosen.connection_id)
            self._used.add(chosen.connection_id)
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
