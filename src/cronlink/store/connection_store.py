"""The connection domain's verbs, on either engine (`store.connections`), declared over
their SQL (`connection_queries`); a token refresh's two hot transactions are each
engine's own (`Store.take_refresh_lock`, `Store.save_refresh`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.store import connection_queries as q
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from cronlink.records.connections import HealthCheck, Sealed
    from cronlink.store.base import SavedRefresh


class ConnectionStore(SubStore):
    add = writes(q.insert_connection)
    get = reads(q.get_connection)
    named = reads(q.named)
    rename = writes(q.rename)
    sealed = reads(q.get_sealed)
    sealed_many = reads(q.get_sealed_many)
    find = reads(q.list_connections)
    set_state = writes(q.set_state)
    delete = writes(q.delete_connection)
    release_refresh_lock = writes(q.release_refresh_lock)
    record_refresh_failure = writes(q.record_refresh_failure)
    due_for_refresh = reads(q.due_for_refresh)
    idle_since = reads(q.idle_since)
    events = reads(q.list_events)
    key_ids = reads(q.key_ids)
    sealed_after = reads(q.sealed_after)
    reseal = writes(q.reseal)
    forget = writes(q.forget)
    active_sealed = reads(q.active_sealed)
    pause = writes(q.pause)
    mark_used = writes(q.mark_used)

    async def take_refresh_lock(
        self, connection_id: int, token: str, until: datetime, now: datetime
    ) -> tuple[bool, Sealed]:
        """Take the refresh lease if it is free, and read the connection as it is then:
        under the lease, or as the process holding it had left it so far."""
        taken = await self._store.take_refresh_lock(connection_id, token, until, now)
        if taken is not None:
            return True, taken
        return False, await self.sealed(connection_id)

    async def save_refresh(self, connection_id: int, saving: SavedRefresh) -> bool:
        """See `Store.save_refresh`: the domain's name for the engine's own hot verb."""
        return await self._store.save_refresh(connection_id, saving)

    async def record_health(self, checks: list[HealthCheck], now: datetime) -> None:
        """Store each check's outcome and each change of health; no transaction for none."""
        if checks:
            await self._store.transact(lambda c: q.record_health(c, checks, now), write=True)
