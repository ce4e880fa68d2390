"""One chat model call made reliable: transport trouble retried with backoff, an answer that
is not what was asked for repaired, tokens and cost summed over every billed answer.

- 408, 425, 429, 5xx, network errors, timeouts and malformed 200s are retried up to
  `Retrying.attempts` times per request, after `Retry-After` when the provider sends one
  (more than `max_wait` fails the call at once, retryable later), else a capped exponential
  backoff with full jitter; each retry sends the same `Idempotency-Key`.
- Any other 4xx fails at once with the provider's message (400 a bad request, 401/403 a
  bad key, 404 an unknown model): sending it again cannot help.
- When JSON was asked for (a schema, or `json_object`), the answer is parsed and checked
  against the schema with `jsonschema` whatever the provider promised; one that fails is
  asked again `repairs` times, the answer and the problem appended (the request restated
  with it), each a new request with a key of its own; then the call fails naming the
  problem (path and message).

The API key is read from the environment at the call and never appears in an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from cronlink.ai import openai
from cronlink.ai.records import Completion, Reply, Usage
from cronlink.ai.validate import problem_with
from cronlink.envtext import expand, retry_after
from cronlink.errors import ConfigError, ModelError
from cronlink.http_client import as_refusal
from cronlink.scrubbing import Scrubber

if TYPE_CHECKING:
    from cronlink.ai.records import ChatModel

RETRYABLE = frozenset({408, 425, 429})
Sleep = Callable[[float], Awaitable[None]]
Pacer = Callable[[int], Awaitable[None]]
"""Waits until a request of so many (estimated) tokens may be sent."""


class Wire(Protocol):
    """What a protocol module provides (see `openai`); `reply` raises a `ValueError` for
    a 200 that holds no answer."""

    def url(self, model: ChatModel) -> str: ...

    def headers(self, key: str, idempotency_key: str | None) -> dict[str, str]: ...

    def body(
        self,
        model: ChatModel,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any] | None,
        schema_name: str,
        json_object: bool,
        max_tokens: int,
    ) -> dict[str, Any]: ...

    def reply(self, data: bytes) -> Reply: ...

    def error_text(self, data: bytes) -> str: ...


PROTOCOLS: dict[str, Wire] = {"openai": openai}


@dataclass(frozen=True, kw_only=True, slots=True)
class Retrying:
    """How transport trouble is retried, per request."""

    attempts: int = 4
    first_backoff: float = 1.0
    max_backoff: float = 30.0
    max_wait: float = 60.0
    """The longest `Retry-After` waited out here; a longer one fails the call (retryable)."""


@dataclass(kw_only=True, slots=True)
class _Call:
    """One `complete` under way: its model, key, wire and what it has spent."""

    model: ChatModel
    wire: Wire
    key: str
    scrub: Scrubber
    retrying: Retrying
    sleep: Sleep
    pace: Pacer | None
    timeout: float
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)

    def failed(self, message: str, *, retryable: bool, wait: float = 0.0) -> ModelError:
        text = self.scrub(f"model {self.model.name}: {message}")
        return ModelError(
            text, retryable=retryable, wait=wait, input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens, requests=self.attempts,
        )  # fmt: skip


async def complete(
    session: aiohttp.ClientSession,
    model: ChatModel,
    messages: list[dict[str, str]],
    *,
    schema: dict[str, Any] | None = None,
    schema_name: str = "answer",
    json_object: bool = False,
    max_tokens: int | None = None,
    idempotency_key: str | None = None,
    within: float | None = None,
    repairs: int = 2,
    retrying: Retrying = Retrying(),
    env: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    pace: Pacer | None = None,
    bearer: str | None = None,
) -> Completion:
    """`model`'s answer to `messages` (`{"role", "content"}` dicts); `ModelError` when there
    is no valid one. `within` (seconds) bounds each request: the model's `timeout` unless
    given. `pace` is awaited before each request (retries and repairs too) with its
    estimated tokens. `bearer` is sent instead of the model's API key (a connection's
    access token)."""
    wire = PROTOCOLS.get(model.protocol)
    if wire is None:
        raise ConfigError(f"model {model.name}: protocol {model.protocol!r} is not supported")
    key = bearer or expand(
        model.api_key, os.environ if env is None else env, f"ai.models.{model.name}"
    )
    call = _Call(
        model=model, wire=wire, key=key, scrub=Scrubber([key]), retrying=retrying, sleep=sleep,
        pace=pace, timeout=model.timeout.total_seconds() if within is None else within,
    )  # fmt: skip
    asked = list(messages)
    for repair in range(repairs + 1):
        sent = wire.body(
            model, asked, schema=schema, schema_name=schema_name, json_object=json_object,
            max_tokens=max_tokens or model.max_output_tokens,
        )  # fmt: skip
        reply = await _answer(session, call, sent, _repair_key(idempotency_key, repair))
        if reply.refusal is not None:
            raise call.failed(f"the model refused: {reply.refusal[:300]}", retryable=False)
        data, problem = problem_with(reply.text, schema, wanted=json_object)
        if problem is None:
            return _completion(call, reply, data)
        asked = [*asked, {"role": "assistant", "content": reply.text}, _repair(messages, problem)]
    raise call.failed(f"no valid answer after {repairs} repairs: {problem}", retryable=False)


def _repair(messages: list[dict[str, str]], problem: str) -> dict[str, str]:
    """The user message asking again: the request restated, then what was wrong, so a
    model that reads the last message alone (the sandbox's) still has the whole request."""
    asked = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    note = f"(Your last answer was not valid: {problem}. Answer again with only JSON that is.)"
    return {"role": "user", "content": f"{asked}\n\n{note}" if asked else note}


def _repair_key(idempotency_key: str | None, repair: int) -> str | None:
    """A repair is a new request (the answer before it was billed): a key of its own."""
    if idempotency_key is None or not repair:
        return idempotency_key
    return f"{idempotency_key}:repair-{repair}"


async def _answer(
    session: aiohttp.ClientSession, call: _Call, sent: dict[str, Any], idempotency_key: str | None
) -> Reply:
    """The provider's answer to one request, retrying transport trouble."""
    headers = call.wire.headers(call.key, idempotency_key)
    tokens = estimated_tokens(sent)
    for attempt in range(1, call.retrying.attempts + 1):
        if call.pace is not None:
            await call.pace(tokens)
        call.attempts += 1
        status, data, waited = await _send(session, call, sent, headers)
        if status == 200:
            try:
                reply = call.wire.reply(data)
            except ValueError as error:
                trouble = str(error)
            else:
                call.usage = _added(call.usage, reply.usage)
                return reply
        elif status is not None and status not in RETRYABLE and status < 500:
            said = call.wire.error_text(data)
            raise call.failed(f"HTTP {status}: {said}", retryable=False)
        else:
            trouble = f"HTTP {status}: {call.wire.error_text(data)}" if status else data.decode()
        if waited is not None and waited > call.retrying.max_wait:
            raise call.failed(f"{trouble} (asked to wait {waited:g}s)", retryable=True, wait=waited)
        if attempt == call.retrying.attempts:
            raise call.failed(f"{trouble} ({attempt} attempts)", retryable=True, wait=waited or 0)
        backoff = min(call.retrying.max_backoff, call.retrying.first_backoff * 2 ** (attempt - 1))
        await call.sleep(waited if waited is not None else random.uniform(0, backoff))
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _send(
    session: aiohttp.ClientSession, call: _Call, sent: dict[str, Any], headers: dict[str, str]
) -> tuple[int | None, bytes, float | None]:
    """(status, body, Retry-After in seconds) of one request; no status when it had no
    answer (the body then says why)."""
    try:
        async with asyncio.timeout(call.timeout):
            url = call.wire.url(call.model)
            async with session.post(url, data=json.dumps(sent), headers=headers) as response:
                data = await response.read()
                waited = retry_after(response.headers.get("Retry-After"))
                return response.status, data, None if waited is None else waited.total_seconds()
    except ConfigError as error:  # the egress policy refused the address
        raise call.failed(str(error), retryable=False) from None
    except aiohttp.ClientError as error:
        refusal = as_refusal(error)
        if refusal is not None:
            raise call.failed(str(refusal), retryable=False) from None
        return None, f"no answer ({type(error).__name__})".encode(), None
    except TimeoutError:
        return None, f"no answer within {call.timeout:g}s".encode(), None


def estimated_tokens(sent: dict[str, Any]) -> int:
    """What a provider counts against a tokens-a-minute limit before answering: the
    prompt's (a token per 4 characters, rounded up, 4 a message) and the answer's `max_tokens`."""
    messages = sent.get("messages") or []
    prompt = sum(4 + (len(str(m.get("content", ""))) + 3) // 4 for m in messages)
    answer = sent.get("max_completion_tokens") or sent.get("max_tokens") or 0
    return int(prompt + answer)


def _completion(call: _Call, reply: Reply, data: Any) -> Completion:
    usage = call.usage
    return Completion(
        text=reply.text, data=data, usage=usage, answer_usage=reply.usage,
        cost_usd=call.model.cost(usage.input_tokens, usage.output_tokens),
        model=reply.model or call.model.model, attempts=call.attempts,
    )  # fmt: skip


def _added(one: Usage, other: Usage) -> Usage:
    return Usage(
        input_tokens=one.input_tokens + other.input_tokens,
        output_tokens=one.output_tokens + other.output_tokens,
    )
