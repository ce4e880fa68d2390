"""Automations whose steps read through one connection and write through others of the
same owner, on real heavy workers against the sandbox's mail provider and its CRM: a
sync from mail to CRM (killed and resumed too), an http step to a connection named, a
connection of someone else refused when the automation is added and when it runs, and
each connection's own account: a 429 from the CRM pauses the CRM's, a 401 renews the
CRM's token."""

from __future__ import annotations

import signal
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from cronlink.automations.steps import parse_steps
from cronlink.errors import ConfigError
from cronlink.records.automations import AutomationEvent, EventState
from cronlink.records.connections import ConnectionState
from cronlink.records.runs import RunState
from cronlink.store.schema import connections as connections_table
from tests.acceptance.automation_kit import AutoKit, auto, heavy_worker
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.test_sync import _heavy_children
from tests.acceptance.worker_kit import finished, wait_until

__all__ = ["auto", "kit"]
BATCH = "/crm/api/contacts/batch"


def mail_to_crm(batch_size: int = 100, page_size: int = 250) -> dict[str, Any]:
    return {
        "name": "push",
        "sync": {
            "source": {"path": "/api/records", "page_size": page_size},
            "destination": {"path": BATCH, "connection": "crm-main", "batch_size": batch_size,
                            "rejected": "errors"},
            "transform": "tests.acceptance.automation_steps:to_contact",
        },
        "max_attempts": 1,
    }  # fmt: skip


STEPS = [{"name": "note", "call": "tests.acceptance.automation_steps:remember"}]


async def crm(
    auto: AutoKit, owner: str = "alice", name: str | None = "crm-main", **more: Any
) -> int:
    tokens = auto.kit.sandbox.crm.provider.grants.mint(owner)
    added = await auto.kit.connections.add(
        provider="sandbox-crm", owner=owner, access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"], name=name,
        **more,
    )  # fmt: skip
    return added.id


async def records(auto: AutoKit, count: int) -> None:
    url = f"{auto.kit.sandbox.url}/sandbox/records"
    async with auto.kit.session.post(url, json={"count": count}) as answer:
        assert answer.status == 200


async def crm_stats(auto: AutoKit) -> dict[str, int]:
    async with auto.kit.session.get(f"{auto.kit.sandbox.url}/sandbox/crm/stats") as answer:
        return dict(await answer.json())


async def add(auto: AutoKit, mail: int, steps: list[dict[str, Any]]) -> int:
    added = await auto.automations.add(
        name="mail-to-crm", connection_id=mail, trigger="new_item", steps=steps,
        start="beginning", params={"trace": str(auto.trace)},
    )  # fmt: skip
    return added.id


async def settle(auto: AutoKit, automation_id: int, count: int = 1) -> list[AutomationEvent]:
    """Feed `count` items, poll them and run their events on a heavy worker until each
    is done or dead-lettered."""
    await auto.feed(count=count)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):

        async def settled() -> bool:
            events = await auto.automations.events(automation_id)
            ends = (EventState.DONE, EventState.DEAD_LETTER)
            return len(events) == count and all(e.state in ends for e in events)

        await wait_until(settled, within=30)
    return await auto.automations.events(automation_id)


async def test_a_sync_copies_mail_records_into_the_crm_once_each(auto: AutoKit) -> None:
    mail, crm_id = await auto.kit.connect(), await crm(auto)
    await records(auto, 1000)
    aid = await add(auto, mail, [mail_to_crm()])
    [event] = await settle(auto, aid)
    assert event.state is EventState.DONE, event.error
    assert event.outputs["push"] == {"copied": 1000, "pages": 4, "rejected_count": 0,
                                     "rejected": []}  # fmt: skip
    stats = await crm_stats(auto)
    assert (stats["contacts"], stats["created"], stats["duplicates"]) == (1000, 1000, 0)
    assert (stats["batches"], stats["largest_batch"], stats["refreshes"]) == (12, 100, 0)
    stored = auto.kit.sandbox.crm.contacts.stored
    assert sorted(c["external_id"] for c in stored) == sorted(f"rec-{n}" for n in range(1, 1001))
    assert "records" not in auto.kit.sandbox.feed.sinks  # nothing was written to the mail side
    for cid in (mail, crm_id):  # both were used, standing in for a health probe
        assert (await auto.kit.connections.get(cid)).used_at is not None


async def test_a_sync_to_the_crm_killed_mid_way_writes_each_record_once(
    auto: AutoKit,
) -> None:
    mail, _ = await auto.kit.connect(), await crm(auto)
    await records(auto, 2000)
    auto.kit.sandbox.configure(latency_ms=30)
    aid = await add(auto, mail, [mail_to_crm(page_size=200)])
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):

        async def far_enough() -> bool:
            return len(auto.kit.sandbox.crm.contacts.stored) >= 700

        await wait_until(far_enough, within=30)
        victims = _heavy_children()
        assert victims, "no heavy run process to kill"
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
        [event] = await auto.automations.events(aid)
        run = await finished(auto.automations.store, event.run_id or 0, within=30)
    assert run.state is RunState.SUCCEEDED
    assert run.attempt == 2  # the killed attempt, then the one that resumed
    stats = await crm_stats(auto)
    assert (stats["contacts"], stats["created"], stats["duplicates"]) == (2000, 2000, 0)
    assert stats["batches"] == 20  # each batch applied once (a repeat is answered as a replay)
    done = await auto.automations.store.automations.event(event.id)
    assert done.state is EventState.DONE
    assert done.outputs["push"]["copied"] == 2000


async def test_an_http_step_posts_through_a_connection_named(auto: AutoKit) -> None:
    mail, crm_id = await auto.kit.connect(), await crm(auto)
    contact = {"external_id": "mail-{event.id}", "email": "p{event.id}@example.com"}
    push = {"url": BATCH, "connection": "crm-main", "json": {"records": [contact]}}
    by_id = {**push, "connection": crm_id, "json": {"records": [{**contact, "name": "again"}]}}
    aid = await add(auto, mail, [{"name": "push", "http": push}, {"name": "again", "http": by_id}])
    events = await settle(auto, aid, count=2)
    assert [e.state for e in events] == [EventState.DONE] * 2, [e.error for e in events]
    assert events[0].outputs["push"]["body"]["created"] == 1
    assert events[0].outputs["again"]["body"]["updated"] == 1
    stored = auto.kit.sandbox.crm.contacts.stored
    assert sorted((c["external_id"], c["name"]) for c in stored) == [
        ("mail-1", "again"), ("mail-2", "again"),
    ]  # fmt: skip
    assert (await auto.kit.connections.get(crm_id)).used_at is not None


async def test_a_step_naming_a_connection_not_the_owners_is_refused_at_add(
    auto: AutoKit,
) -> None:
    mail = await auto.kit.connect("alice")
    bobs = await crm(auto, "bob")
    with pytest.raises(ConfigError) as refused:
        await add(auto, mail, [*STEPS, mail_to_crm()])
    assert str(refused.value) == (
        "steps[1] (push).sync.destination.connection: 'crm-main' is not a connection of alice"
    )
    step = {"name": "push", "http": {"url": BATCH, "connection": bobs}}
    with pytest.raises(ConfigError) as refused:
        await add(auto, mail, [step])
    assert str(refused.value) == (
        f"steps[0] (push).http.connection: connection {bobs} is not a connection of alice"
    )
    alices = await crm(auto, "alice")
    await auto.kit.connections.disable(alices)
    with pytest.raises(
        ConfigError,
        match=r"^steps\[1\] \(push\)\.sync\.destination\.connection: 'crm-main' is disabled$",
    ):
        await add(auto, mail, [*STEPS, mail_to_crm()])
    await auto.kit.connections.store.connections.set_state(
        alices, ConnectionState.NEEDS_REAUTH, "invalid_grant: revoked", auto.now()
    )
    with pytest.raises(ConfigError, match=r"'crm-main' needs reauth \(invalid_grant: revoked\)$"):
        await add(auto, mail, [*STEPS, mail_to_crm()])
    with pytest.raises(
        ConfigError, match=r"^steps\[0\] \(push\)\.http\.connection: 'a b' is not a connection name"
    ):
        await add(auto, mail, [{"name": "push", "http": {"url": BATCH, "connection": "a b"}}])
    assert await auto.automations.find() == []


@pytest.mark.parametrize("change", ["deleted", "given to bob", "needs reauth"])
async def test_a_connection_taken_away_after_add_dead_letters_naming_it(
    auto: AutoKit, change: str
) -> None:
    mail, crm_id = await auto.kit.connect(), await crm(auto)
    await records(auto, 10)
    aid = await add(auto, mail, [*STEPS, mail_to_crm()])
    store = auto.kit.connections.store
    if change == "deleted":
        await auto.kit.connections.delete(crm_id)
    elif change == "given to bob":
        await store.transact(
            lambda c: c.execute(
                update(connections_table).where(connections_table.c.id == crm_id)
                .values(owner="bob")
            ),
            write=True,
        )  # fmt: skip
    else:
        await store.connections.set_state(
            crm_id, ConnectionState.NEEDS_REAUTH, "invalid_grant: revoked", auto.now()
        )
    [event] = await settle(auto, aid)
    assert event.state is EventState.DEAD_LETTER
    why = "needs reauth (invalid_grant: revoked)" if change == "needs reauth" else (
        "is not a connection of alice"
    )  # fmt: skip
    assert event.error == f"step 1 (push): sync.destination.connection: 'crm-main' {why}"
    assert event.step == 1
    assert (await crm_stats(auto))["batches"] == 0


async def test_a_429_from_the_crm_pauses_the_crm_account_not_the_mail_one(
    auto: AutoKit,
) -> None:
    mail, crm_id = await auto.kit.connect(), await crm(auto)
    await records(auto, 10)
    aid = await add(auto, mail, [mail_to_crm()])
    auto.kit.sandbox.configure(crm_api_status=429, retry_after=300)
    [event] = await settle(auto, aid)
    assert event.state is EventState.DEAD_LETTER
    assert event.error is not None
    assert "POST answered HTTP 429" in event.error
    paused = (await auto.kit.connections.get(crm_id)).paused_until
    assert paused is not None
    assert paused >= auto.now() + timedelta(seconds=299)
    assert (await auto.kit.connections.get(mail)).paused_until is None
    tally = await auto.poll()  # the mail account polls on, inside the CRM's pause
    assert (tally.polls, tally.paused) == (1, 0)


async def test_a_401_from_the_crm_renews_the_crm_token(auto: AutoKit) -> None:
    mail, crm_id = await auto.kit.connect(), await crm(auto)
    await records(auto, 10)
    aid = await add(auto, mail, [mail_to_crm()])
    before = await auto.kit.connections.get(crm_id)
    auto.kit.sandbox.crm.provider.grants.access.clear()  # the CRM forgot its access tokens
    [event] = await settle(auto, aid)
    assert event.state is EventState.DONE, event.error
    assert (await crm_stats(auto))["refreshes"] == 1
    assert auto.kit.sandbox.grants.stats.refreshes == 0  # the mail token was left alone
    assert (await auto.kit.connections.get(crm_id)).version == before.version + 1
    assert (await auto.kit.connections.get(mail)).version == 1
    assert len(auto.kit.sandbox.crm.contacts.stored) == 10


def test_the_docs_example_parses_and_bad_connections_are_named() -> None:
    text = (Path(__file__).parents[2] / "docs" / "automations.md").read_text()
    block = text[text.index("# mail-to-crm.toml") :]
    steps = tomllib.loads(block[: block.index("```")])["steps"]
    assert [s.connections() for s in parse_steps(steps)] == [
        [("sync.destination.connection", "crm-main")], [("http.connection", 2)],
    ]  # fmt: skip
    sync = {"source": {"path": "/a", "connection": False}, "destination": {"path": "/b"}}
    for step, said in (
        ({"sync": sync}, "sync.source.connection: a sync goes through a connection"),
        ({"http": {"url": "/a", "connection": 0}}, "http.connection: 0 is not a connection id"),
    ):
        with pytest.raises(ConfigError) as refused:
            parse_steps([{"name": "s", **step}])
        assert str(refused.value).startswith(f"steps[0] (s).{said}")
