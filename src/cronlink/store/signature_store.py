"""Spent signatures (`store.signatures`): a signed call is good once across the fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.store.schema import spent_signatures

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection

    from cronlink.store.base import Store


class SignatureStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def spend(self, signature: str, now: datetime, expires_at: datetime) -> bool:
        """Record a signature as used: False if some process had already used it. Those
        past their window are forgotten on the way (they are refused by time anyway)."""

        def work(c: Connection) -> bool:
            c.execute(delete(spent_signatures).where(spent_signatures.c.expires_at < now))
            dialect = postgresql if c.dialect.name == "postgresql" else sqlite
            statement = (
                dialect.insert(spent_signatures)
                .values(signature=signature, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["signature"])
                .returning(spent_signatures.c.signature)
            )
            return c.execute(statement).first() is not None

        return await self._store.transact(work, write=True)
