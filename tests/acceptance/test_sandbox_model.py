"""The sandbox's OpenAI-compatible chat endpoint over real HTTP: the wire format, the key,
each model fault switch, the requests-per-minute window, billing and repeat counts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from cronlink.sandbox.model import MODELS, parse, reply
from tests.acceptance.hostile_kit import Answer, Hostile, hostile

__all__ = ["hostile"]
KEY = "sandbox-model-key"
CLASSIFY: dict[str, Any] = {
    "model": "sandbox-model",
    "messages": [
        {"role": "system", "content": "Classify the email. Labels: urgent, invoice, newsletter"},
        {"role": "user", "content": "Your invoice of $120.00 is attached."},
    ],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["urgent", "invoice", "newsletter"]},
        "amount": {"type": "number"},
    },
    "required": ["label", "amount"],
    "additionalProperties": False,
}
EXTRACT = {
    **CLASSIFY,
    "response_format": {"type": "json_schema", "json_schema": {"name": "mail", "schema": SCHEMA}},
}


async def complete(
    hostile: Hostile, body: dict[str, Any] | bytes, key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> Answer:  # fmt: skip
    sent = {**(headers or {}), **({"Authorization": f"Bearer {key}"} if key is not None else {})}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent["Content-Type"] = "application/json"
    url = f"{hostile.sandbox.url}/v1/chat/completions"
    async with hostile.session.post(url, data=data, headers=sent) as response:
        return Answer(
            status=response.status, retry_after=response.headers.get("Retry-After"),
            text=await response.text(),
        )  # fmt: skip


async def model_stats(hostile: Hostile) -> dict[str, Any]:
    return dict((await hostile.stats())["model"])


def content(answer: Answer) -> str:
    assert answer.status == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


async def test_a_completion_has_openais_shape_and_predictable_usage(hostile: Hostile) -> None:
    answer = await complete(hostile, CLASSIFY)
    expected = reply(parse(CLASSIFY))
    body = answer.json()
    assert (body["object"], body["model"], body["id"][:9]) == (
        "chat.completion", "sandbox-model", "chatcmpl-",
    )  # fmt: skip
    assert body["choices"] == [
        {"index": 0, "finish_reason": "stop",
         "message": {"role": "assistant", "content": "invoice", "refusal": None}},
    ]  # fmt: skip
    usage = (expected.prompt_tokens, expected.completion_tokens)
    assert body["usage"] == {
        "prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage),
    }  # fmt: skip
    assert (await complete(hostile, CLASSIFY)).json()["usage"] == body["usage"]
    stats = await model_stats(hostile)
    assert (stats["requests"], stats["ok"]) == (2, 2)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (2 * usage[0], 2 * usage[1])


async def test_a_json_schema_answer_validates(hostile: Hostile) -> None:
    answer = json.loads(content(await complete(hostile, EXTRACT)))
    Draft202012Validator(SCHEMA).validate(answer)
    assert answer == {"label": "invoice", "amount": 120.0}


@pytest.mark.parametrize("key", [None, "wrong", ""])
async def test_a_wrong_or_missing_key_is_a_401_in_openais_shape(
    hostile: Hostile, key: str | None
) -> None:
    answer = await complete(hostile, CLASSIFY, key=key)
    assert answer.status == 401
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == ("invalid_api_key" if key else None)
    stats = await model_stats(hostile)
    assert (stats["unauthorized"], stats["requests"]) == (1, 0)


async def test_the_key_is_a_switch_and_models_are_listed_behind_it(hostile: Hostile) -> None:
    await hostile.switch(model_api_key="another-key")
    assert (await complete(hostile, CLASSIFY)).status == 401
    assert (await complete(hostile, CLASSIFY, key="another-key")).status == 200
    assert (await hostile.call("/v1/models", "another-key")).json()["data"][0]["id"] == MODELS[0]
    assert (await hostile.call("/v1/models", KEY)).status == 401


async def test_bad_requests_are_400_and_unknown_models_404(hostile: Hostile) -> None:
    assert (await complete(hostile, b"{not json")).status == 400
    refused = await complete(hostile, {**CLASSIFY, "stream": True})
    assert (refused.status, refused.json()["error"]["param"]) == (400, "stream")
    unknown = await complete(hostile, {**CLASSIFY, "model": "gpt-4o"})
    assert (unknown.status, unknown.json()["error"]["code"]) == (404, "model_not_found")
    assert (await model_stats(hostile))["bad_requests"] == 3


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, "7")])
async def test_model_status_answers_that_status(
    hostile: Hostile, status: int, retry_after: str | None
) -> None:
    await hostile.switch(model_status=status, retry_after=7)
    answer = await complete(hostile, CLASSIFY)
    assert (answer.status, answer.retry_after) == (status, retry_after)
    assert answer.json()["error"]["type"] in ("server_error", "requests")
    stats = await model_stats(hostile)
    assert (stats["errors"], stats["throttled"]) == ((0, 1) if status == 429 else (1, 0))
    assert stats["prompt_tokens"] == 0


async def test_a_drawn_throttle_is_a_429_with_retry_after_and_a_seed_replays_it(
    hostile: Hostile,
) -> None:
    hostile.sandbox.configure(model_throttle_rate=1, retry_after=3)
    answer = await complete(hostile, CLASSIFY)
    assert (answer.status, answer.retry_after) == (429, "3")
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"
    runs = []
    for _ in range(2):
        hostile.sandbox.configure(model_throttle_rate=0.5, seed=11)
        runs.append([(await complete(hostile, CLASSIFY)).status for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429}


async def test_a_malformed_answer_is_a_200_that_is_not_json_and_not_billed(
    hostile: Hostile,
) -> None:
    hostile.sandbox.configure(model_malformed_rate=1)
    answer = await complete(hostile, CLASSIFY)
    assert answer.status == 200
    with pytest.raises(ValueError, match="Unterminated string"):
        answer.json()
    stats = await model_stats(hostile)
    assert (stats["malformed"], stats["ok"], stats["prompt_tokens"]) == (1, 0, 0)


async def test_an_invalid_answer_breaks_the_schema_and_is_billed(hostile: Hostile) -> None:
    hostile.sandbox.configure(model_invalid_rate=1)
    answer = json.loads(content(await complete(hostile, EXTRACT)))
    assert answer["label"] not in SCHEMA["properties"]["label"]["enum"]
    assert not Draft202012Validator(SCHEMA).is_valid(answer)
    assert content(await complete(hostile, CLASSIFY)) not in ("urgent", "invoice", "newsletter")
    stats = await model_stats(hostile)
    assert (stats["invalid"], stats["ok"]) == (2, 0)
    assert stats["prompt_tokens"] > 0


async def test_model_rpm_refuses_past_the_window_and_counts_the_busiest_minute(
    hostile: Hostile,
) -> None:
    hostile.sandbox.configure(model_rpm=2)
    statuses = [(await complete(hostile, CLASSIFY)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    hostile.clock.now += 30
    early = await complete(hostile, CLASSIFY)  # refused ones count: the window is full
    assert (early.status, early.retry_after) == (429, "30")
    hostile.clock.now += 30  # the first three left the window
    assert (await complete(hostile, CLASSIFY)).status == 200
    stats = await model_stats(hostile)
    assert (stats["over_rpm"], stats["throttled"], stats["max_per_minute"]) == (2, 2, 4)


async def test_repeats_are_counted_by_idempotency_key_else_by_body(hostile: Hostile) -> None:
    for n in range(3):
        await complete(hostile, {**CLASSIFY, "max_tokens": 10 + n})
    assert ((await model_stats(hostile))["repeats"]) == 0
    hostile.sandbox.configure(model_status=503)
    await complete(hostile, CLASSIFY, headers={"Idempotency-Key": "k1"})
    hostile.sandbox.configure(model_status=None)
    await complete(hostile, {**CLASSIFY, "max_tokens": 9}, headers={"Idempotency-Key": "k1"})
    await complete(hostile, {**CLASSIFY, "max_tokens": 10})  # the first request's body
    stats = await model_stats(hostile)
    assert (stats["repeats"], stats["billed_repeats"]) == (2, 1)


async def test_three_hundred_completions_held_a_second_each_all_complete(
    hostile: Hostile,
) -> None:
    await hostile.switch(model_latency_ms=1000)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        wide = Hostile(hostile.sandbox, session, hostile.clock)
        answers = await asyncio.gather(*(complete(wide, CLASSIFY) for _ in range(300)))
    assert [a.status for a in answers] == [200] * 300
    stats = await model_stats(hostile)
    assert (stats["requests"], stats["ok"], stats["max_per_minute"]) == (300, 300, 300)
