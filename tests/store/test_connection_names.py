"""Connection names, the same on both engines: unique per owner (a name another owner
uses is free), changed and taken away, found by owner and name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from cronlink.errors import ConfigError, StoreError
from cronlink.store import Store
from cronlink.store.schema import connections

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def _add(store: Store, owner: str, name: str | None) -> int:
    added = await store.connections.add(
        provider="sandbox", owner=owner, scopes="profile",
        seal=lambda cid: (f"sealed-{cid}", "key1"), expires_at=None, refresh_due_at=None,
        now=NOW, name=name,
    )  # fmt: skip
    return added.id


async def test_a_name_is_unique_per_owner_and_free_for_another(store: Store) -> None:
    first = await _add(store, "alice", "crm-main")
    other = await _add(store, "bob", "crm-main")
    await _add(store, "alice", None)
    await _add(store, "alice", None)  # any number without a name
    taken = rf"alice has a connection named 'crm-main' already \(connection {first}\)"
    with pytest.raises(ConfigError, match=taken):
        await _add(store, "alice", "crm-main")
    found = await store.connections.named("alice", "crm-main")
    assert found is not None
    assert (found.id, found.name) == (first, "crm-main")
    assert (await store.connections.named("bob", "crm-main")).id == other  # type: ignore[union-attr]
    assert await store.connections.named("carol", "crm-main") is None
    assert [c.name for c in await store.connections.find(owner="alice")] == ["crm-main", None, None]


async def test_the_unique_index_holds_when_the_check_is_passed_by(store: Store) -> None:
    await _add(store, "alice", "crm-main")
    row = {
        "provider": "sandbox", "owner": "alice", "name": "crm-main", "state": "active",
        "health": "unknown", "scopes": "", "secrets": "", "key_id": "", "version": 1,
        "refresh_failures": 0, "health_failures": 0, "health_successes": 0,
        "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    with pytest.raises(StoreError):
        await store.transact(lambda c: c.execute(insert(connections).values(**row)), write=True)


async def test_rename_takes_a_free_name_and_records_it(store: Store) -> None:
    first = await _add(store, "alice", "mail")
    second = await _add(store, "alice", None)
    later = NOW + timedelta(minutes=1)
    with pytest.raises(ConfigError, match="named 'mail' already"):
        await store.connections.rename(second, "mail", later)
    renamed = await store.connections.rename(second, "crm-main", later)
    assert (renamed.name, renamed.updated_at) == ("crm-main", later)
    assert (await store.connections.rename(first, "mail", later)).name == "mail"  # its own
    assert (await store.connections.rename(first, None, later)).name is None
    assert (await store.connections.rename(second, "mail", later)).name == "mail"  # free now
    kinds = [(e.kind, e.detail) for e in await store.connections.events(second)]
    assert kinds[1:] == [("renamed", "no name -> 'crm-main'"), ("renamed", "'crm-main' -> 'mail'")]
    assert (await store.connections.get(second)).name == "mail"
