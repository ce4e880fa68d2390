"""Automation events processed on a real heavy worker: steps in order, each retried on
its own with the run's idempotency key, dead letters, and replays from the failed step."""

from __future__ import annotations

from datetime import timedelta

from cronlink.records.automations import EventState
from cronlink.records.runs import RunState
from tests.acceptance.automation_kit import AutoKit, auto, heavy_worker
from tests.acceptance.automation_steps import traced
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.worker_kit import finished, wait_until

__all__ = ["auto", "kit"]
STEP = "tests.acceptance.automation_steps"


async def _add(auto: AutoKit, steps: list[dict[str, object]], **options: object) -> int:
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_item", steps=steps, start="beginning",
        params={"trace": str(auto.trace)}, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    return added.id


async def _settled(auto: AutoKit, aid: int, count: int) -> list[EventState]:
    async def all_settled() -> bool:
        events = await auto.automations.events(aid)
        finished = [e for e in events if e.state in (EventState.DONE, EventState.DEAD_LETTER)]
        return len(finished) == count

    await wait_until(all_settled, within=60)
    return [e.state for e in await auto.automations.events(aid)]


async def test_each_event_runs_its_steps_and_posts_to_the_webhook(auto: AutoKit) -> None:
    hook = f"{auto.kit.sandbox.url}/api/hooks/summaries"
    aid = await _add(auto, [
        {"name": "classify", "call": f"{STEP}:classify"},
        {"name": "notify", "http": {
            "url": hook, "connection": False,
            "json": {"subject": "{event.subject}", "label": "{steps.classify.label}"},
        }},
    ])  # fmt: skip
    await auto.feed(items=[{"subject": "urgent: server down"}, {"subject": "lunch"}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        assert await _settled(auto, aid, 2) == [EventState.DONE, EventState.DONE]
    assert auto.kit.sandbox.feed.sinks["summaries"] == [
        {"subject": "urgent: server down", "label": "urgent"},
        {"subject": "lunch", "label": "normal"},
    ]
    event = (await auto.automations.events(aid))[0]
    assert event.outputs["classify"] == {"label": "urgent"}
    assert event.outputs["notify"]["status"] == 200


async def test_a_step_is_retried_alone_with_one_idempotency_key(auto: AutoKit) -> None:
    aid = await _add(auto, [
        {"name": "first", "call": f"{STEP}:remember"},
        {"name": "second", "call": f"{STEP}:flaky", "backoff": "10ms"},
    ])  # fmt: skip
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        assert await _settled(auto, aid, 1) == [EventState.DONE]
    assert len(traced(auto.trace, "remember")) == 1  # the first step is not run again
    attempts = traced(auto.trace, "flaky")
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["key"] == attempts[1]["key"]
    assert attempts[0]["key"].endswith(":second")


async def test_a_dead_letter_replays_from_the_step_that_failed(auto: AutoKit) -> None:
    aid = await _add(auto, [
        {"name": "first", "call": f"{STEP}:remember"},
        {"name": "second", "call": f"{STEP}:gated", "max_attempts": 2, "backoff": "10ms"},
    ])  # fmt: skip
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        assert await _settled(auto, aid, 1) == [EventState.DEAD_LETTER]
        [event] = await auto.automations.events(aid, EventState.DEAD_LETTER)
        assert event.step == 1
        assert event.error is not None
        assert "step 1 (second)" in event.error
        assert "cannot be handled yet" in event.error
        run = await finished(auto.automations.store, event.run_id or 0)
        assert run.state is RunState.FAILED  # the failure is visible in run history too
        (auto.trace / "open").touch()
        await auto.automations.replay(event.id)
        assert await _settled(auto, aid, 1) == [EventState.DONE]
    assert len(traced(auto.trace, "remember")) == 1  # replayed from `second`, not from scratch
    assert len(traced(auto.trace, "gated")) == 3
    replayed = await auto.automations.store.automations.event(event.id)
    assert replayed.outputs["first"] == {"seen": 1}
    assert replayed.outputs["second"] == "passed"


async def test_one_event_at_a_time_in_order(auto: AutoKit) -> None:
    aid = await _add(auto, [{"name": "only", "call": f"{STEP}:remember"}])
    await auto.feed(count=8)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto, concurrency=4):
        await _settled(auto, aid, 8)
    assert [t["event"] for t in traced(auto.trace, "remember")] == list(range(1, 9))


async def test_the_connection_token_never_goes_to_another_host(auto: AutoKit) -> None:
    elsewhere = auto.kit.sandbox.url.replace("127.0.0.1", "localhost") + "/api/hooks/stolen"
    aid = await _add(auto, [
        {"name": "post", "http": {"url": "{event.reply_to}", "json": {"x": 1}}},
    ])  # fmt: skip
    await auto.feed(items=[{"reply_to": elsewhere}])
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        assert await _settled(auto, aid, 1) == [EventState.DEAD_LETTER]
    [event] = await auto.automations.events(aid)
    assert event.error is not None
    assert "is not on the provider's base URL" in event.error
    assert "stolen" not in auto.kit.sandbox.feed.sinks  # nothing was sent


async def test_a_replayed_done_event_is_sent_again_under_a_new_key(auto: AutoKit) -> None:
    aid = await _add(auto, [{"name": "only", "call": f"{STEP}:remember"}])
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        await _settled(auto, aid, 1)
        [event] = await auto.automations.events(aid)
        replayed = await auto.automations.replay(event.id)
        assert replayed.replays == 1

        async def twice() -> bool:
            return len(traced(auto.trace, "remember")) == 2

        await wait_until(twice, within=60)
    first, second = (t["key"] for t in traced(auto.trace, "remember"))
    assert first != second
    assert first.endswith(f"event-{event.id}.0:only")
