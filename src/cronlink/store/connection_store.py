"""The connection domain's verbs, on either engine (`store.connections`).

Their SQL is the same for SQLite and PostgreSQL (`connection_queries`), so they are
written once over `Store.transact` instead of twice, once per engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.storable import escaped
from cronlink.store import connection_queries as q
from cronlink.store import queries

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sqlalchemy import Connection as Db

    from cronlink.connections.model import (
        Connection,
        ConnectionState,
        Event,
        HealthCheck,
        Sealed,
    )
    from cronlink.records import NewRun
    from cronlink.store.base import SavedRefresh, Store


class ConnectionStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self,
        *,
        provider: str,
        owner: str,
        scopes: str,
        seal: Callable[[int], tuple[str, str]],
        expires_at: datetime | None,
        refresh_due_at: datetime | None,
        now: datetime,
        follow_up: Callable[[int], NewRun | None] = lambda _: None,
    ) -> Connection:
        """Store a new connection with its sealed secrets, and its first refresh run."""

        def work(c: Db) -> Connection:
            added = q.insert_connection(
                c, provider=provider, owner=owner, scopes=scopes, seal=seal,
                expires_at=expires_at, refresh_due_at=refresh_due_at, now=now,
            )  # fmt: skip
            run = follow_up(added.id)
            if run is not None:
                queries.enqueue(c, run, now)
            return added

        return await self._store.transact(work, write=True)

    async def get(self, connection_id: int) -> Connection:
        return await self._store.transact(lambda c: q.get_connection(c, connection_id), write=False)

    async def sealed(self, connection_id: int) -> Sealed:
        return await self._store.transact(lambda c: q.get_sealed(c, connection_id), write=False)

    async def sealed_many(self, connection_ids: list[int]) -> dict[int, Sealed]:
        return await self._store.transact(
            lambda c: q.get_sealed_many(c, connection_ids), write=False
        )

    async def find(
        self,
        *,
        owner: str | None = None,
        provider: str | None = None,
        state: ConnectionState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Connection]:
        return await self._store.transact(
            lambda c: q.list_connections(
                c, owner=owner, provider=provider, state=state, after_id=after_id, limit=limit
            ),
            write=False,
        )

    async def set_state(
        self, connection_id: int, state: ConnectionState, reason: str | None, now: datetime
    ) -> Connection:
        return await self._store.transact(
            lambda c: q.set_state(c, connection_id, state, reason, now), write=True
        )

    async def delete(self, connection_id: int, now: datetime) -> None:
        await self._store.transact(lambda c: q.delete_connection(c, connection_id, now), write=True)

    async def take_refresh_lock(
        self, connection_id: int, token: str, until: datetime, now: datetime
    ) -> tuple[bool, Sealed]:
        """Take the refresh lease if it is free, and read the connection as it is then:
        under the lease, or as the process holding it had left it so far."""
        taken = await self._store.take_refresh_lock(connection_id, token, until, now)
        if taken is not None:
            return True, taken
        return False, await self.sealed(connection_id)

    async def release_refresh_lock(self, connection_id: int, token: str) -> None:
        await self._store.transact(
            lambda c: q.release_refresh_lock(c, connection_id, token), write=True
        )

    async def save_refresh(self, connection_id: int, saving: SavedRefresh) -> bool:
        """See `Store.save_refresh` (each engine has its own SQL for this hot verb)."""
        return await self._store.save_refresh(connection_id, saving)

    async def record_refresh_failure(
        self,
        connection_id: int,
        *,
        token: str,
        message: str,
        state: ConnectionState,
        kind: str,
        retry_at: datetime | None,
        now: datetime,
        follow_up: NewRun | None,
        counted: bool = True,
    ) -> None:
        """Record a refresh that did not happen, with its event and the run retrying it;
        one that only waits out a pause (not `counted`) leaves the backoff as it was."""

        said = escaped(message)

        def work(c: Db) -> None:
            q.record_refresh_failure(
                c, connection_id, token=token, message=said, state=state,
                retry_at=retry_at, now=now, counted=counted,
            )  # fmt: skip
            q.add_event(c, connection_id, kind, said, now)
            if follow_up is not None:
                queries.enqueue(c, follow_up, now)

        await self._store.transact(work, write=True)

    async def due_for_refresh(self, now: datetime, limit: int) -> list[int]:
        return await self._store.transact(lambda c: q.due_for_refresh(c, now, limit), write=False)

    async def idle_since(self, provider: str, before: datetime, limit: int) -> list[int]:
        return await self._store.transact(
            lambda c: q.idle_since(c, provider, before, limit), write=False
        )

    async def events(
        self, connection_id: int | None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        return await self._store.transact(
            lambda c: q.list_events(c, connection_id, after_id, limit), write=False
        )

    async def key_ids(self) -> set[str]:
        return await self._store.transact(q.key_ids, write=False)

    async def sealed_after(self, after_id: int, limit: int) -> list[tuple[int, int, str, str]]:
        return await self._store.transact(lambda c: q.sealed_after(c, after_id, limit), write=False)

    async def reseal(self, connection_id: int, version: int, ciphertext: str, key_id: str) -> bool:
        return await self._store.transact(
            lambda c: q.reseal(c, connection_id, version, ciphertext, key_id), write=True
        )

    async def active_sealed(self, after_id: int, limit: int) -> list[Sealed]:
        return await self._store.transact(
            lambda c: q.active_sealed(c, after_id, limit), write=False
        )

    async def record_health(self, checks: list[HealthCheck], now: datetime) -> None:
        if checks:
            await self._store.transact(lambda c: q.record_health(c, checks, now), write=True)

    async def pause(self, connection_id: int, until: datetime) -> None:
        await self._store.transact(lambda c: q.pause(c, connection_id, until), write=True)

    async def mark_used(self, connection_id: int, now: datetime) -> None:
        await self._store.transact(lambda c: q.mark_used(c, connection_id, now), write=True)
