"""The chat model client against the sandbox's OpenAI-compatible endpoint over real HTTP:
schema answers checked and repaired, transport trouble retried after Retry-After or a
backoff, other 4xx at once, tokens and cost summed over every billed answer, and the key
in no error. Waits go through the client's `sleep`: the tests record them, never sleep."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from cronlink.ai.client import Retrying, complete
from cronlink.ai.records import ChatModel, Usage
from cronlink.egress import LOOPBACK
from cronlink.errors import ModelError
from cronlink.http_client import new_session
from cronlink.sandbox.model import parse, reply
from tests.acceptance.hostile_kit import Hostile, hostile
from tests.acceptance.test_sandbox_model import CLASSIFY, SCHEMA

__all__ = ["hostile"]
KEY = "sandbox-model-key"
ENV = {"SANDBOX_MODEL_KEY": KEY}
MESSAGES = CLASSIFY["messages"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    made = new_session(LOOPBACK)
    yield made
    await made.close()


class Waits(list[float]):
    """The client's sleep: records each wait, and runs `then` at the first one."""

    def __init__(self, then: Any = None) -> None:
        super().__init__()
        self.then = then

    async def __call__(self, seconds: float) -> None:
        if not self and self.then is not None:
            self.then()
        self.append(seconds)


def model(hostile: Hostile, **changes: Any) -> ChatModel:
    fields: dict[str, Any] = {
        "name": "fast", "base_url": f"{hostile.sandbox.url}/v1", "model": "sandbox-model",
        "api_key": "${SANDBOX_MODEL_KEY}", "input_price": 0.15, "output_price": 0.6,
        "timeout": timedelta(seconds=10),
    }  # fmt: skip
    return ChatModel(**{**fields, **changes})


async def ask(
    hostile: Hostile, session: aiohttp.ClientSession, waits: Waits | None = None, **options: Any
) -> Any:
    chosen = model(hostile, **options.pop("model", {}))
    return await complete(
        session, chosen, MESSAGES, env=ENV, sleep=Waits() if waits is None else waits,
        retrying=Retrying(attempts=3, first_backoff=0.5), **options,
    )  # fmt: skip


async def model_stats(hostile: Hostile) -> dict[str, int]:
    return dict((await hostile.stats())["model"])


def seed_drawing(*draws: bool, rate: float = 0.5) -> int:
    """A seed whose first draws at `rate` strike (True) or not as given."""
    for seed in range(10_000):
        drawn = random.Random(seed)
        if all((drawn.random() < rate) == draw for draw in draws):
            return seed
    raise AssertionError("no such seed")


def expected_usage(schema: dict[str, Any] | None = SCHEMA) -> Usage:
    body: dict[str, Any] = {"model": "sandbox-model", "messages": MESSAGES}
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema", "json_schema": {"name": "answer", "schema": schema},
        }  # fmt: skip
    answer = reply(parse(body))
    return Usage(input_tokens=answer.prompt_tokens, output_tokens=answer.completion_tokens)


async def test_a_schema_answer_is_parsed_checked_and_priced(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    done = await ask(hostile, session, schema=SCHEMA, idempotency_key="k-1")
    assert done.data == {"label": "invoice", "amount": 120.0}
    assert (done.model, done.attempts) == ("sandbox-model", 1)
    assert done.usage == done.answer_usage == expected_usage()
    stats = await model_stats(hostile)
    assert (stats["requests"], stats["ok"]) == (1, 1)
    assert (done.usage.input_tokens, done.usage.output_tokens) == (
        stats["prompt_tokens"], stats["completion_tokens"],
    )  # fmt: skip
    cost = (stats["prompt_tokens"] * 0.15 + stats["completion_tokens"] * 0.6) / 1e6
    assert done.cost_usd == pytest.approx(cost)
    assert done.cost_usd > 0


async def test_plain_text_is_not_parsed(hostile: Hostile, session: aiohttp.ClientSession) -> None:
    done = await ask(hostile, session)
    assert (done.text, done.data) == ("invoice", None)
    assert done.usage == expected_usage(None)


async def test_an_invalid_answer_is_repaired_and_both_answers_are_counted(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    hostile.sandbox.configure(model_invalid_rate=0.5, seed=seed_drawing(True, False))
    done = await ask(hostile, session, schema=SCHEMA, idempotency_key="k-2")
    assert done.data == {"label": "invoice", "amount": 120.0}
    assert done.attempts == 2
    stats = await model_stats(hostile)
    assert (stats["requests"], stats["invalid"], stats["ok"]) == (2, 1, 1)
    assert done.usage == Usage(
        input_tokens=stats["prompt_tokens"], output_tokens=stats["completion_tokens"]
    )
    assert done.answer_usage.input_tokens < done.usage.input_tokens
    assert done.cost_usd == pytest.approx(
        (stats["prompt_tokens"] * 0.15 + stats["completion_tokens"] * 0.6) / 1e6
    )
    assert stats["billed_repeats"] == 0  # the repair is a new request, with a key of its own


async def test_an_answer_always_invalid_fails_naming_the_problem_after_the_repairs(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    hostile.sandbox.configure(model_invalid_rate=1)
    with pytest.raises(ModelError) as raised:
        await ask(hostile, session, schema=SCHEMA, repairs=2)
    message = str(raised.value)
    assert message.startswith("model fast: no valid answer after 2 repairs: ")
    assert "at $" in message or "not JSON" in message
    assert not raised.value.retryable
    assert (await model_stats(hostile))["invalid"] == 3


async def test_a_429_is_retried_after_its_retry_after(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    hostile.sandbox.configure(model_status=429, retry_after=7)
    waits = Waits(then=lambda: hostile.sandbox.configure(model_status=None))
    done = await ask(hostile, session, waits, schema=SCHEMA, idempotency_key="k-3")
    assert (waits, done.attempts) == ([7.0], 2)
    stats = await model_stats(hostile)
    assert (stats["throttled"], stats["ok"], stats["repeats"]) == (1, 1, 1)
    assert done.usage == expected_usage()  # the 429 was not billed


async def test_a_retry_after_too_long_fails_at_once_saying_when(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    hostile.sandbox.configure(model_status=429, retry_after=600)
    with pytest.raises(ModelError) as raised:
        await ask(hostile, session)
    assert (raised.value.retryable, raised.value.wait) == (True, 600.0)
    assert (await model_stats(hostile))["requests"] == 1


@pytest.mark.parametrize("fault", [{"model_status": 500}, {"model_malformed_rate": 1}])
async def test_a_server_error_or_malformed_answer_is_retried_after_a_backoff(
    hostile: Hostile, session: aiohttp.ClientSession, fault: dict[str, Any]
) -> None:
    hostile.sandbox.configure(**fault)
    healed = {name: 0 if name.endswith("rate") else None for name in fault}
    waits = Waits(then=lambda: hostile.sandbox.configure(**healed))
    done = await ask(hostile, session, waits, schema=SCHEMA)
    assert done.attempts == 2
    assert len(waits) == 1
    assert 0 <= waits[0] <= 0.5
    assert done.usage == expected_usage()


async def test_transport_trouble_that_lasts_fails_retryable(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    hostile.sandbox.configure(model_status=503)
    waits = Waits()
    with pytest.raises(ModelError) as raised:
        await ask(hostile, session, waits)
    assert raised.value.retryable
    assert "HTTP 503: The sandbox model failed" in str(raised.value)
    assert len(waits) == 2
    assert waits[1] <= 1.0  # the second backoff is at most twice the first
    assert (await model_stats(hostile))["errors"] == 3


async def test_no_answer_at_all_is_retried(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ModelError) as raised:
        await complete(
            session, ChatModel(name="gone", base_url="http://127.0.0.1:9/v1", model="m",
                               api_key="${SANDBOX_MODEL_KEY}"),
            MESSAGES, env=ENV, sleep=Waits(), retrying=Retrying(attempts=2),
        )  # fmt: skip
    assert raised.value.retryable
    assert "no answer (ClientConnectorError) (2 attempts)" in str(raised.value)


@pytest.mark.parametrize("wrong", ["sk-wrong-key-canary-5512", KEY[:8]])
async def test_a_401_fails_at_once_and_never_quotes_the_key(
    hostile: Hostile, session: aiohttp.ClientSession, wrong: str
) -> None:
    hostile.sandbox.configure(model_api_key="another-key")
    with pytest.raises(ModelError) as raised:
        await complete(
            session, model(hostile), MESSAGES, env={"SANDBOX_MODEL_KEY": wrong}, sleep=Waits()
        )
    message = str(raised.value)
    assert message.startswith("model fast: HTTP 401: Incorrect API key provided.")
    assert not raised.value.retryable
    assert wrong not in message
    assert (await model_stats(hostile))["unauthorized"] == 1


async def test_an_unknown_model_is_a_404_at_once(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ModelError, match="HTTP 404: The model `gpt-9` does not exist"):
        await ask(hostile, session, model={"model": "gpt-9"})
    assert (await model_stats(hostile))["bad_requests"] == 1


async def test_a_key_not_in_the_environment_is_named(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    from cronlink.errors import ConfigError

    with pytest.raises(ConfigError, match="SANDBOX_MODEL_KEY is not set"):
        await complete(session, model(hostile), MESSAGES, env={})
