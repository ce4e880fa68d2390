"""`ctx.ai` in Python jobs, light and heavy (where the worker admits and records each call
over the run's pipe): the answer checked against its schema, and the call kept with the
run's attempt, its tokens those the model billed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cronlink.ai import ChatModel, Models
from cronlink.records.runs import RunState, Tier
from cronlink.store import Store, store_for
from tests.acceptance.sandbox_kit import Kit, kit
from tests.acceptance.worker_kit import enqueue, finished, running_worker

__all__ = ["kit"]
JOBS = [(Tier.LIGHT, "ask-model"), (Tier.HEAVY, "heavy-ask-model")]


@pytest.mark.parametrize(
    ("tier", "job"), [(Tier.LIGHT, "ask-model"), (Tier.HEAVY, "heavy-ask-model")]
)
async def test_a_job_calls_a_model_and_the_call_is_kept_with_its_run(
    kit: Kit, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, tier: Tier, job: str
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    fast = ChatModel(
        name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}", input_price=2.0, output_price=8.0, budget_usd=100.0,
    )  # fmt: skip
    async with running_worker(sqlite_store, tier, ai=Models({"fast": fast})):
        run_id = await enqueue(sqlite_store, job, "I love this product")
        run = await finished(sqlite_store, run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    every: dict[str, Any] = await kit.stats()
    stats = every["model"]
    [call] = await sqlite_store.ai.of_run(run_id)
    assert (call.job, call.attempt, call.model, call.answered) == (job, 1, "fast", True)
    assert (call.input_tokens, call.output_tokens) == (
        stats["prompt_tokens"], stats["completion_tokens"],
    )  # fmt: skip
    assert call.cost_usd == pytest.approx(fast.cost(call.input_tokens, call.output_tokens))
    assert call.requests == stats["requests"] == 1
    assert run.result is not None
    assert f'"tokens": {call.input_tokens}' in run.result


@pytest.mark.parametrize(
    ("tier", "job"), [(Tier.LIGHT, "ask-model"), (Tier.HEAVY, "heavy-ask-model")]
)
async def test_two_workers_keep_to_a_models_requests_a_minute_between_them(
    kit: Kit, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, tier: Tier, job: str
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    paced = ChatModel(
        name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}", rpm=480,  # one request every 125 ms
    )  # fmt: skip
    other = store_for(sqlite_store.url)
    await other.open()
    models = Models({"fast": paced})
    try:
        async with (
            running_worker(sqlite_store, tier, ai=models),
            running_worker(other, tier, ai=models),
        ):
            started = time.monotonic()
            runs = [await enqueue(sqlite_store, job, f"message {n}") for n in range(9)]
            for run_id in runs:
                assert (await finished(sqlite_store, run_id)).state is RunState.SUCCEEDED
            took = time.monotonic() - started
    finally:
        await other.close()
    stats: dict[str, Any] = await kit.stats()
    assert stats["model"]["requests"] == 9
    # Nine requests, the first at once, then one each 125 ms: the last no sooner than 1 s.
    assert took >= 8 * 0.125


async def test_a_models_key_is_kept_out_of_what_a_run_records(
    kit: Kit, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-cronlink-0123456789abcdef"
    monkeypatch.setenv("SANDBOX_MODEL_KEY", key)
    fast = ChatModel(name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
                     api_key="${SANDBOX_MODEL_KEY}")  # fmt: skip
    async with running_worker(sqlite_store, Tier.LIGHT, ai=Models({"fast": fast})):
        run = await finished(sqlite_store, await enqueue(sqlite_store, "leak-model-key"))
    logs = await sqlite_store.run_logs(run.id)
    assert run.error is not None
    assert "failed with key" in run.error.message
    recorded = " ".join([run.error.message, run.error.traceback or "", *(t for *_, t in logs)])
    assert "the key is" in recorded
    assert key not in recorded


async def test_a_request_bigger_than_a_models_whole_tpm_fails_without_being_sent(
    kit: Kit, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    small = ChatModel(name="fast", base_url=f"{kit.sandbox.url}/v1", model="sandbox-model",
                      api_key="${SANDBOX_MODEL_KEY}", tpm=100)  # fmt: skip
    async with running_worker(sqlite_store, Tier.LIGHT, ai=Models({"fast": small})):
        run = await finished(sqlite_store, await enqueue(sqlite_store, "ask-model", "hi"))
    assert run.error is not None
    assert "model fast: a request of about 1,0" in run.error.message
    assert "tokens is more than its tpm of 100 allows in a minute" in run.error.message
    stats: dict[str, Any] = await kit.stats()
    assert stats["model"]["requests"] == 0
