"""The connection verbs, the same on both engines: leases, compare-and-swap, events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cronlink.errors import ConnectionNotFoundError
from cronlink.records.connections import ConnectionState
from cronlink.records.runs import NewRun, Reason, RunState, Tier
from cronlink.store import RunFilter, Store
from cronlink.store.base import SavedRefresh

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def _add(store: Store, owner: str = "alice") -> int:
    added = await store.connections.add(
        provider="sandbox", owner=owner, scopes="profile",
        seal=lambda cid: (f"sealed-{cid}", "key1"),
        expires_at=NOW + timedelta(hours=1), refresh_due_at=NOW + timedelta(minutes=50), now=NOW,
    )  # fmt: skip
    return added.id


async def test_add_seals_with_the_new_id_and_reads_back(store: Store) -> None:
    first, second = await _add(store), await _add(store, "bob")
    sealed = await store.connections.sealed(second)
    assert sealed.ciphertext == f"sealed-{second}"
    assert sealed.key_id == "key1"
    assert sealed.connection.owner == "bob"
    assert sealed.connection.version == 1
    assert sealed.connection.expires_at == NOW + timedelta(hours=1)
    assert [c.id for c in await store.connections.find()] == [first, second]
    assert [c.id for c in await store.connections.find(owner="bob")] == [second]
    assert await store.connections.key_ids() == {"key1"}
    assert [e.kind for e in await store.connections.events(first)] == ["created"]


async def test_one_refresh_lease_at_a_time_until_it_lapses(store: Store) -> None:
    cid = await _add(store)
    until = NOW + timedelta(seconds=60)
    takers = await asyncio.gather(
        *(store.connections.take_refresh_lock(cid, f"t{i}", until, NOW) for i in range(8))
    )
    assert sum(taken for taken, _ in takers) == 1
    assert {sealed.connection.version for _, sealed in takers} == {1}
    assert not (await store.connections.take_refresh_lock(cid, "late", until, NOW))[0]
    lapsed = NOW + timedelta(seconds=61)
    assert (await store.connections.take_refresh_lock(cid, "after", lapsed, lapsed))[0]


async def test_saving_is_fenced_by_lease_and_version(store: Store) -> None:
    cid = await _add(store)
    await store.connections.take_refresh_lock(cid, "mine", NOW + timedelta(minutes=1), NOW)

    async def save(token: str, version: int, ciphertext: str) -> bool:
        saving = SavedRefresh(
            token=token, version=version, ciphertext=ciphertext, key_id="key2",
            expires_at=NOW + timedelta(hours=2), refresh_due_at=None, now=NOW,
            event="refreshed", follow_up=None,
        )  # fmt: skip
        return await store.connections.save_refresh(cid, saving)

    assert not await save("theirs", 1, "x")
    assert not await save("mine", 0, "x")
    assert await save("mine", 1, "new")
    sealed = await store.connections.sealed(cid)
    assert (sealed.ciphertext, sealed.key_id, sealed.connection.version) == ("new", "key2", 2)
    # The lease went with the save: a second save under it is refused.
    assert not await save("mine", 2, "again")
    assert [e.kind for e in await store.connections.events(cid)] == ["created", "refreshed"]


async def test_reseal_does_not_overwrite_a_newer_version(store: Store) -> None:
    cid = await _add(store)
    assert not await store.connections.reseal(cid, 5, "other", "key9")
    assert await store.connections.reseal(cid, 1, "resealed", "key9")
    sealed = await store.connections.sealed(cid)
    assert (sealed.ciphertext, sealed.key_id, sealed.connection.version) == ("resealed", "key9", 1)


async def test_forgetting_lost_secrets_needs_the_version_and_stops_refreshes(
    store: Store,
) -> None:
    cid = await _add(store)
    assert not await store.connections.forget(cid, 7, "empty", "key2", "lost key1", NOW)
    assert await store.connections.forget(cid, 1, "empty", "key2", "lost key1", NOW)
    sealed = await store.connections.sealed(cid)
    assert (sealed.ciphertext, sealed.key_id, sealed.connection.version) == ("empty", "key2", 2)
    forgotten = sealed.connection
    assert (forgotten.state, forgotten.last_error) == (ConnectionState.NEEDS_REAUTH, "lost key1")
    assert forgotten.refresh_due_at is None
    assert await store.connections.key_ids() == {"key2"}
    assert await store.connections.due_for_refresh(NOW + timedelta(days=1), 10) == []
    events = await store.connections.events(cid)
    assert [(e.kind, e.detail) for e in events][-1] == ("needs_reauth", "lost key1")


async def test_failures_states_and_deletion(store: Store) -> None:
    cid = await _add(store)
    await store.connections.take_refresh_lock(cid, "t", NOW + timedelta(minutes=1), NOW)
    await store.connections.record_refresh_failure(
        cid, token="t", message="sandbox refused the refresh: invalid_grant",
        state=ConnectionState.NEEDS_REAUTH, kind="needs_reauth", retry_at=None, now=NOW,
        follow_up=None,
    )  # fmt: skip
    after = await store.connections.get(cid)
    assert after.state is ConnectionState.NEEDS_REAUTH
    assert after.refresh_failures == 1
    assert after.last_error == "sandbox refused the refresh: invalid_grant"
    assert await store.connections.due_for_refresh(NOW + timedelta(days=1), 10) == []
    disabled = await store.connections.set_state(cid, ConnectionState.DISABLED, "ops", NOW)
    assert disabled.state is ConnectionState.DISABLED
    await store.connections.delete(cid, NOW)
    with pytest.raises(ConnectionNotFoundError):
        await store.connections.get(cid)
    kinds = [e.kind for e in await store.connections.events(cid)]
    assert kinds == ["created", "needs_reauth", "disabled", "deleted"]


async def test_due_and_idle_connections_are_found(store: Store) -> None:
    due, fresh = await _add(store), await _add(store)
    later = NOW + timedelta(minutes=55)
    assert due in await store.connections.due_for_refresh(later, 10)
    assert set(await store.connections.idle_since("sandbox", later, 10)) == {due, fresh}
    assert await store.connections.idle_since("sandbox", NOW - timedelta(days=1), 10) == []


async def test_a_save_queues_the_next_refresh_once(store: Store) -> None:
    cid = await _add(store)
    due = NOW + timedelta(minutes=50)
    run = NewRun(
        job="refresh-connection", tier=Tier.LIGHT, reason=Reason.ENQUEUE,
        payload={"connection_id": cid}, not_before=due, dedupe_key=f"refresh:{cid}:2",
    )  # fmt: skip
    for version in (1, 2):
        token = f"t{version}"
        taken = await store.take_refresh_lock(cid, token, NOW + timedelta(minutes=1), NOW)
        assert taken is not None
        assert taken.connection.version == version
        saving = SavedRefresh(
            token=token, version=version, ciphertext=f"v{version}", key_id="k",
            expires_at=due + timedelta(minutes=10), refresh_due_at=due, now=NOW,
            event="access token valid until …", follow_up=run,
        )  # fmt: skip
        assert await store.save_refresh(cid, saving)
    queued = await store.list_runs(RunFilter(job="refresh-connection"))
    assert [(r.payload, r.not_before, r.state) for r in queued] == [
        ({"connection_id": cid}, due, RunState.QUEUED)
    ]
    after = await store.connections.get(cid)
    assert (after.version, after.refresh_due_at, after.refreshed_at) == (3, due, NOW)
    details = [e.detail for e in await store.connections.events(cid) if e.kind == "refreshed"]
    assert details == ["access token valid until …"] * 2
