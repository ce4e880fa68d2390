"""The `ai` step on a real heavy worker: each new sandbox email classified by the sandbox's
chat model, the answer stored with the event and used by the next step; a model not
declared refused when the automation is added; an answer that stays invalid dead-letters
the event without the step being retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlink.ai import ChatModel, Models
from cronlink.automations.service import Automations
from cronlink.errors import ConfigError
from cronlink.records.ai_calls import month_of
from cronlink.records.automations import EventState
from tests.acceptance.automation_kit import BUILTIN, AutoKit, auto, heavy_worker
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.worker_kit import wait_until

__all__ = ["auto", "kit"]
LABELS = ["urgent", "invoice", "newsletter"]
CLASSIFY: dict[str, Any] = {"name": "classify", "max_attempts": 3, "backoff": "10ms", "ai": {
    "model": "fast",
    "system": f"Classify the email. Labels: {', '.join(LABELS)}",
    "prompt": "{event.subject}",
    "schema": {
        "type": "object", "properties": {"label": {"type": "string", "enum": LABELS}},
        "required": ["label"], "additionalProperties": False,
    },
    "max_tokens": 50,
}}  # fmt: skip


@pytest.fixture
def models(auto: AutoKit, monkeypatch: pytest.MonkeyPatch) -> Models:
    # In the worker's environment only: a heavy run's process gets it from the worker.
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    fast = ChatModel(
        name="fast", base_url=f"{auto.kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}", input_price=0.15, output_price=0.6,
    )  # fmt: skip
    return Models({"fast": fast})


def declaring(auto: AutoKit, models: Models) -> Automations:
    """The kit's automations, told which models are declared (as settings tell them)."""
    kit = auto.kit
    auto.automations = Automations(
        kit.connections.store, kit.connections.providers, kit.session, kit.connections,
        process_job=BUILTIN["process-automation"], models=models.names,
    )  # fmt: skip
    return auto.automations


async def add(auto: AutoKit, steps: list[dict[str, Any]]) -> int:
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_email", steps=steps, start="beginning"
    )
    return added.id


async def settled(auto: AutoKit, aid: int, count: int) -> None:
    async def all_settled() -> bool:
        events = await auto.automations.events(aid)
        ended = [e for e in events if e.state in (EventState.DONE, EventState.DEAD_LETTER)]
        return len(ended) == count

    await wait_until(all_settled, within=60)


async def dead_letter(auto: AutoKit, models: Models, step: dict[str, Any]) -> str:
    """The error of the one event an automation of `step` dead-letters."""
    aid = await add(auto, [step])
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):
        await settled(auto, aid, 1)
    [event] = await auto.automations.events(aid)
    assert event.state is EventState.DEAD_LETTER
    assert event.error is not None
    return event.error


async def model_stats(auto: AutoKit) -> dict[str, int]:
    stats: dict[str, Any] = await auto.kit.stats()
    return dict(stats["model"])


async def test_each_new_email_is_classified_and_the_answer_kept_with_the_event(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    hook = f"{auto.kit.sandbox.url}/api/hooks/labels"
    aid = await add(auto, [CLASSIFY, {"name": "notify", "http": {
        "url": hook, "connection": False,
        "json": {"subject": "{event.subject}", "label": "{steps.classify.label}"},
    }}])  # fmt: skip
    subjects = ["URGENT: the server is down", "Your invoice of $120.00 is attached",
                "This week's newsletter: ten links"]  # fmt: skip
    await auto.feed(items=[{"subject": s} for s in subjects])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):
        await settled(auto, aid, 3)
    events = await auto.automations.events(aid)
    assert [e.state for e in events] == [EventState.DONE] * 3
    assert [e.outputs["classify"] for e in events] == [{"label": label} for label in LABELS]
    assert auto.kit.sandbox.feed.sinks["labels"] == [
        {"subject": s, "label": label} for s, label in zip(subjects, LABELS, strict=True)
    ]
    stats = await model_stats(auto)
    assert (stats["requests"], stats["ok"], stats["repeats"]) == (3, 3, 0)


async def test_a_model_not_declared_is_refused_when_the_automation_is_added(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    step = {**CLASSIFY, "ai": {**CLASSIFY["ai"], "model": "gpt-9"}}
    with pytest.raises(ConfigError) as raised:
        await add(auto, [step])
    assert str(raised.value) == (
        "steps[0] (classify).ai.model: 'gpt-9' is not declared: add [ai.models.gpt-9] to "
        "cronlink.toml (declared: fast)"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"schema": {"type": "nothing"}}, "steps[0] (classify).ai.schema: not a JSON Schema"),
        ({"temperature": 1}, "steps[0] (classify).ai.temperature: Extra inputs"),
    ],
)
async def test_a_bad_ai_step_is_refused_naming_its_key(
    auto: AutoKit, models: Models, change: dict[str, Any], problem: str
) -> None:
    declaring(auto, models)
    step = {**CLASSIFY, "ai": {**CLASSIFY["ai"], **change}}
    with pytest.raises(ConfigError) as raised:
        await add(auto, [step])
    assert str(raised.value).startswith(problem)


async def test_a_model_undeclared_at_run_time_dead_letters_the_event_naming_it(
    auto: AutoKit, models: Models
) -> None:
    error = await dead_letter(auto, models, {**CLASSIFY, "ai": {**CLASSIFY["ai"], "model": "gone"}})
    assert "step 0 (classify): step classify: model 'gone' is not declared" in error
    assert (await model_stats(auto))["requests"] == 0


async def test_an_answer_that_stays_invalid_dead_letters_without_retrying_the_step(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    auto.kit.sandbox.configure(model_invalid_rate=1)
    error = await dead_letter(auto, models, CLASSIFY)
    assert "no valid answer after 2 repairs: at $.label:" in error
    assert "sandbox-model-key" not in error
    assert (await model_stats(auto))["invalid"] == 3  # one step attempt: the first + 2 repairs


async def test_a_throttled_model_is_retried_by_the_step(auto: AutoKit, models: Models) -> None:
    declaring(auto, models)
    auto.kit.sandbox.configure(model_status=429, retry_after=0)
    error = await dead_letter(auto, models, {**CLASSIFY, "max_attempts": 2})
    assert "HTTP 429: Rate limit reached" in error
    assert (await model_stats(auto))["throttled"] == 8  # 2 step attempts of 4 requests each


async def test_the_tokens_and_cost_kept_are_those_the_model_billed(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    # Some answers break the schema: repaired calls, and failed ones, are billed too.
    auto.kit.sandbox.configure(model_invalid_rate=0.4)
    aid = await add(auto, [CLASSIFY])
    await auto.feed(count=6)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):
        await settled(auto, aid, 6)
    stats = await model_stats(auto)
    store = auto.automations.store
    [month] = await store.ai.month(month_of(datetime.now(UTC)))
    assert (month.input_tokens, month.output_tokens) == (
        stats["prompt_tokens"], stats["completion_tokens"],
    )  # fmt: skip
    fast = models.get("fast")
    assert month.cost_usd == pytest.approx(fast.cost(month.input_tokens, month.output_tokens))
    events = await auto.automations.events(aid)
    dead = sum(e.state is EventState.DEAD_LETTER for e in events)
    assert (month.calls, month.failed) == (6, dead)  # a repaired call is one call
    runs = {e.run_id for e in events}
    kept = [c for run in runs if run is not None for c in await store.ai.of_run(run)]
    assert sum(c.requests for c in kept) == stats["requests"]
    assert {(c.job, c.model) for c in kept} == {("process-automation", "fast")}


async def test_a_spent_budget_stops_new_calls_and_says_until_when(
    auto: AutoKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_MODEL_KEY", "sandbox-model-key")
    dear = ChatModel(
        name="fast", base_url=f"{auto.kit.sandbox.url}/v1", model="sandbox-model",
        api_key="${SANDBOX_MODEL_KEY}", input_price=1000.0, budget_usd=0.01,
    )  # fmt: skip
    models = Models({"fast": dear})
    declaring(auto, models)
    aid = await add(auto, [CLASSIFY])
    await auto.feed(count=2)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):  # an automation's events run one at a time
        await settled(auto, aid, 2)
    first, second = await auto.automations.events(aid)
    assert first.state is EventState.DONE
    assert second.state is EventState.DEAD_LETTER
    assert second.error is not None
    assert "model fast: this month's budget of $0.01 is spent ($0.0" in second.error
    assert (await model_stats(auto))["requests"] == 1  # the second event never called


async def test_a_replayed_dead_letter_reuses_the_stored_answer_without_a_new_call(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    cid = await auto.kit.connect()
    gated = {"name": "act", "call": "tests.acceptance.automation_steps:gated", "max_attempts": 1}
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_email", steps=[CLASSIFY, gated],
        start="beginning", params={"trace": str(auto.trace)},
    )  # fmt: skip
    await auto.feed(count=3)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):
        await settled(auto, added.id, 3)
        dead = await auto.automations.events(added.id, EventState.DEAD_LETTER)
        assert [e.step for e in dead] == [1, 1, 1]
        called = (await model_stats(auto))["requests"]
        (auto.trace / "open").touch()
        for event in dead:
            await auto.automations.replay(event.id)

        async def all_done() -> bool:
            events = await auto.automations.events(added.id)
            return all(e.state is EventState.DONE for e in events)

        await wait_until(all_done, within=60)
    stats = await model_stats(auto)
    assert called == 3
    assert (stats["requests"], stats["repeats"], stats["billed_repeats"]) == (3, 0, 0)
    events = await auto.automations.events(added.id)
    assert all(e.outputs["classify"]["label"] in LABELS for e in events)


async def test_a_step_reaches_its_model_with_a_named_connections_token_and_logs_an_excerpt(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    granted = await auto.kit.connect(name="model-grant")
    token = (await auto.kit.connections.credentials(granted)).access_token
    # The model takes the connection's token, not the declared key.
    auto.kit.sandbox.configure(model_api_key=token)
    step = {**CLASSIFY, "ai": {**CLASSIFY["ai"], "connection": "model-grant", "excerpt": 12}}
    aid = await add(auto, [step])
    await auto.feed(items=[{"subject": "URGENT: the server is down"}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, ai=models):
        await settled(auto, aid, 1)
    [event] = await auto.automations.events(aid)
    assert event.state is EventState.DONE, event.error
    assert event.outputs["classify"] == {"label": "urgent"}
    logged = [text for *_, text in await auto.automations.store.run_logs(event.run_id or 0)]
    assert "step classify: prompt (12 of " in "\n".join(logged)
    assert 'step classify: answer (12 of 19 characters): {"label": "u' in logged
    assert not any(token in line or "sandbox-model-key" in line for line in logged)


async def test_an_ai_step_naming_another_owners_connection_is_refused_when_added(
    auto: AutoKit, models: Models
) -> None:
    declaring(auto, models)
    await auto.kit.connect(user="bob", name="bobs-grant")
    step = {**CLASSIFY, "ai": {**CLASSIFY["ai"], "connection": "bobs-grant"}}
    with pytest.raises(ConfigError) as refused:
        await add(auto, [step])
    assert str(refused.value) == (
        "steps[0] (classify).ai.connection: 'bobs-grant' is not a connection of alice"
    )
