"""The audit log's verbs (`store.audit`): append, and read back newest first."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from cronlink.records.audit import AuditEntry
from cronlink.store.schema import audit_log
from cronlink.store.verbs import SubStore, reads

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sqlalchemy import Connection

    from cronlink.records.runs import NewRun

DETAIL_CHARS = 2000


def _find(
    c: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries newest first, of `actor`, of `action`, since `since`, before `before_id`."""
    query = select(audit_log)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    rows = c.execute(query.order_by(audit_log.c.id.desc()).limit(limit))
    return [AuditEntry(**row._mapping) for row in rows]


class AuditStore(SubStore):
    find = reads(_find)

    async def append(self, *entries: AuditEntry) -> None:
        """Write `entries` in one transaction (none for no entries)."""
        if not entries:
            return
        values = [_values(entry) for entry in entries]
        await self._store.transact(lambda c: c.execute(insert(audit_log), values), write=True)

    async def enqueue(
        self, run: NewRun, now: datetime, audit: Callable[[int, bool], AuditEntry]
    ) -> tuple[int, bool]:
        """Queue a run (or find the one its dedupe key started) and write its audit line
        (`audit(run_id, deduplicated)`) in one transaction: (run id, deduplicated). The
        domain's name for the API's hot path, which each engine runs in its own SQL
        (`Store.enqueue_audited`)."""
        return await self._store.enqueue_audited(run, now, audit)


def _values(entry: AuditEntry) -> dict[str, Any]:
    values = dataclasses.asdict(entry)
    values.pop("id")
    values["detail"] = values["detail"][:DETAIL_CHARS]
    return values
