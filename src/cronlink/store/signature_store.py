"""Spent signatures (`store.signatures`): a signed call is good once across the fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.store.schema import spent_signatures
from cronlink.store.verbs import SubStore, writes

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection


def _spend(c: Connection, signature: str, now: datetime, expires_at: datetime) -> bool:
    """Record a signature as used: False if some process had already used it. Those past
    their window are forgotten on the way (they are refused by time anyway)."""
    c.execute(delete(spent_signatures).where(spent_signatures.c.expires_at < now))
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(spent_signatures)
        .values(signature=signature, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(spent_signatures.c.signature)
    )
    return c.execute(statement).first() is not None


class SignatureStore(SubStore):
    spend = writes(_spend)
