"""Heartbeats (`store.heartbeats`): when a role last showed it was alive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.store.schema import heartbeats

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection

    from cronlink.store.base import Store


class HeartbeatStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def beat(self, role: str, now: datetime) -> None:
        def work(c: Connection) -> None:
            dialect = postgresql if c.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(heartbeats).values(role=role, at=now)
            c.execute(statement.on_conflict_do_update(index_elements=["role"], set_={"at": now}))

        await self._store.transact(work, write=True)

    async def last(self, role: str) -> datetime | None:
        query = select(heartbeats.c.at).where(heartbeats.c.role == role)
        return await self._store.transact(lambda c: c.execute(query).scalar(), write=False)
