"""Heartbeats (`store.heartbeats`): when a role last showed it was alive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.store.schema import heartbeats
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection


def _beat(c: Connection, role: str, now: datetime) -> None:
    """Record that `role` is alive at `now`."""
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(heartbeats).values(role=role, at=now)
    c.execute(statement.on_conflict_do_update(index_elements=["role"], set_={"at": now}))


def _last(c: Connection, role: str) -> datetime | None:
    """When `role` last beat; None if it never did."""
    return c.execute(select(heartbeats.c.at).where(heartbeats.c.role == role)).scalar()


class HeartbeatStore(SubStore):
    beat = writes(_beat)
    last = reads(_last)
