"""The rules every request to a provider's account follows, against the sandbox provider:
the refresh chain never breaks, an expired token is never sent, a 401 renews the token
once for everyone, a 429 from any caller pauses every caller and punishes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cronlink.records.automations import EventState
from cronlink.records.connections import Health
from cronlink.records.runs import RunState, Tier
from cronlink.store import RunFilter
from tests.acceptance.automation_kit import BUILTIN, AutoKit, auto, heavy_worker
from tests.acceptance.sandbox_kit import Kit, kit
from tests.acceptance.worker_kit import running_worker, wait_until

__all__ = ["auto", "kit"]


async def _inbox(
    auto: AutoKit, connection_id: int, name: str = "inbox", trigger: str = "new_item"
) -> int:
    added = await auto.automations.add(
        name=name, connection_id=connection_id, trigger=trigger, start="beginning",
        steps=[{"name": "s", "call": "m:f"}],
    )  # fmt: skip
    return added.id


async def test_the_refresh_chain_survives_a_slow_token_endpoint(kit: Kit) -> None:
    # The answer takes 300 ms, so the tokens are stored a little after the instant their
    # next refresh was computed from: that run must refresh all the same.
    kit.sandbox.configure(token_lifetime=4, latency_ms=300)
    cid = await kit.connect()
    store = kit.connections.store
    async with running_worker(store, Tier.LIGHT, BUILTIN, connections=kit.connections):

        async def refreshed_thrice() -> bool:
            return (await kit.connections.get(cid)).version >= 4

        await wait_until(refreshed_thrice, within=15)
    runs = await store.list_runs(RunFilter(job="refresh-connection", limit=100))
    done = [r for r in runs if r.state is RunState.SUCCEEDED]
    assert len(done) >= 3
    assert all('"refreshed": true' in (r.result or "") for r in done), [r.result for r in done]
    after = await kit.connections.get(cid)
    waiting = [r for r in runs if r.state is RunState.QUEUED]
    assert [r.payload for r in waiting] == [{"connection_id": cid, "version": after.version}]


async def test_a_401_renews_the_token_once_for_every_poll_of_the_account(auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    for trigger in ("new_email", "new_item", "change"):
        await _inbox(auto, cid, trigger, trigger)
    await auto.feed(count=3)
    auto.kit.sandbox.grants.access.clear()  # the provider no longer knows the access token
    tally = await auto.poll()
    assert (tally.polls, tally.failed, tally.events) == (3, 0, 9)
    assert auto.kit.sandbox.grants.stats.refreshes == 1  # one refresh, not one per poll
    assert (await auto.kit.connections.get(cid)).version == 2


async def test_a_401_on_a_step_renews_the_token_in_a_heavy_run(auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    write = {"url": "/api/records", "json": {"records": [{"id": "{event.id}"}]}}
    added = await auto.automations.add(
        name="copy", connection_id=cid, trigger="new_item", start="beginning",
        steps=[{"name": "write", "http": write, "max_attempts": 1}],
    )  # fmt: skip
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    auto.kit.sandbox.grants.access.clear()
    async with heavy_worker(auto):

        async def settled() -> bool:
            events = await auto.automations.events(added.id)
            return bool(events) and events[0].state in (EventState.DONE, EventState.DEAD_LETTER)

        await wait_until(settled, within=30)
    [event] = await auto.automations.events(added.id)
    assert event.state is EventState.DONE, event.error
    assert auto.kit.sandbox.feed.sinks["records"] == [{"id": 1}]
    assert auto.kit.sandbox.grants.stats.refreshes == 1


async def test_an_expired_token_is_never_sent(auto: AutoKit) -> None:
    aid = await _inbox(auto, await auto.kit.connect())
    await auto.feed(count=2)
    auto.kit.sandbox.configure(token_status=503)
    before = auto.kit.sandbox.feed.requests
    tally = await auto.poll(timedelta(hours=2))  # the token expired an hour ago
    assert (tally.polls, tally.failed, tally.paused) == (0, 0, 1)
    assert auto.kit.sandbox.feed.requests == before  # nothing sent with the dead token
    waiting = await auto.automations.get(aid)
    assert waiting.poll_failures == 0
    assert waiting.last_error is not None
    assert "expired" in waiting.last_error
    auto.kit.sandbox.configure(token_status=None)
    tally = await auto.poll(timedelta(minutes=1))
    assert (tally.polls, tally.events) == (1, 2)


async def test_a_429_on_a_probe_pauses_polls_and_probes_of_the_account(auto: AutoKit) -> None:
    alice = await auto.kit.connect("alice")
    bob = await auto.kit.connect("bob")
    for owner, cid in (("alice", alice), ("bob", bob)):
        await _inbox(auto, cid, f"inbox-{owner}")
    await auto.feed(count=2)
    auto.kit.sandbox.configure(throttled_users=("alice",), retry_after=300)
    assert (await auto.kit.connections.check(alice)).health is Health.HEALTHY  # it answered
    stats = auto.kit.sandbox.grants.stats
    assert (stats.throttled, stats.probes) == (1, 0)  # the 429 came before the probe handler
    tally = await auto.poll(timedelta(minutes=1))
    assert (tally.polls, tally.events) == (1, 2)  # bob polled; alice's poll was not taken
    await auto.kit.connections.check(alice)
    await auto.kit.connections.check_all()
    assert stats.throttled == 1  # no request reached the paused account
    auto.kit.sandbox.configure(throttled_users=())
    tally = await auto.poll(timedelta(minutes=5))
    assert (tally.polls, tally.events) == (2, 2)


async def test_polls_back_off_no_longer_than_the_providers_cap(auto: AutoKit) -> None:
    aid = await _inbox(auto, await auto.kit.connect())
    auto.kit.sandbox.configure(api_status=500)
    for _ in range(8):
        await auto.poll(timedelta(hours=1))
    failing = await auto.automations.get(aid)
    assert failing.poll_failures == 8
    assert failing.next_poll_at is not None
    # 2^8 minutes uncapped; the sandbox's provider keeps the default cap of 5 minutes.
    assert failing.next_poll_at - auto.at <= timedelta(minutes=5) + failing.interval


async def test_concurrent_requests_after_a_429_wait_for_the_pause(kit: Kit) -> None:
    cid = await kit.connect()
    kit.sandbox.configure(api_status=429, retry_after=60)
    accounts = [await kit.connections.account(cid) for _ in range(5)]
    url = f"{kit.sandbox.url}/api/me"
    first = await accounts[0].request(kit.session, "GET", url, within=5)
    assert first.status == 429
    assert first.paused_until is not None
    outcomes = await asyncio.gather(
        *(a.request(kit.session, "GET", url, within=5) for a in accounts[1:]),
        return_exceptions=True,
    )
    assert all(type(o).__name__ == "AccountPausedError" for o in outcomes)
    stored = await kit.connections.get(cid)
    assert stored.paused_until == first.paused_until  # other processes see it too
