"""Queueing on PostgreSQL outside the scheduler's firing: an API call's run with its audit
line, and the LISTEN/NOTIFY wake-ups of a tier's idle workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from cronlink.store.run_insert import insert_sql, psycopg_param, raw_values
from cronlink.store.schema import ON_DEDUPE_KEY, to_micros

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from psycopg import AsyncConnection
    from sqlalchemy import Connection

    from cronlink.records.audit import AuditEntry
    from cronlink.records.runs import NewRun, Tier

_INSERT_ONCE = insert_sql(psycopg_param, suffix=f"{ON_DEDUPE_KEY} RETURNING id")
_RUN_OF_KEY = "SELECT id FROM runs WHERE dedupe_key = %(dedupe_key)s"
_AUDIT_AND_NOTIFY = """
WITH line AS (
    INSERT INTO audit_log (at, actor, action, target, client, outcome, detail)
    VALUES (%(at)s, %(actor)s, %(action)s, %(target)s, %(client)s, %(outcome)s, %(detail)s))
SELECT pg_notify(%(channel)s, '')
"""


async def enqueue_audited(
    db: AsyncConnection[Any],
    run: NewRun,
    now: datetime,
    audit: Callable[[int, bool], AuditEntry],
    detail_chars: int,
) -> tuple[int, bool]:
    """`AuditStore.enqueue` in plain psycopg: an API call's run (or the one its dedupe key
    started), its audit line and the tier's wake-up in one transaction. The lookup of an
    existing key is its own statement: in the insert's snapshot, a run that a concurrent
    caller committed while this one waited on the key would not be visible yet."""
    async with db.transaction():
        params = raw_values(run, to_micros(now))
        row = await (await db.execute(_INSERT_ONCE, params)).fetchone()
        deduplicated = row is None
        if row is None:
            found = await db.execute(_RUN_OF_KEY, {"dedupe_key": run.dedupe_key})
            row = await found.fetchone()
        assert row is not None
        run_id = int(row[0])
        entry = audit(run_id, deduplicated)
        line = {
            "at": to_micros(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "client": entry.client, "outcome": entry.outcome,
            "detail": entry.detail[:detail_chars], "channel": channel(run.tier),
        }  # fmt: skip
        await db.execute(_AUDIT_AND_NOTIFY, line)
    return run_id, deduplicated


def channel(tier: Tier) -> str:
    """The LISTEN/NOTIFY channel of a tier's workers."""
    return f"cronlink_{tier.value}"


def notify(c: Connection, tiers: set[Tier]) -> None:
    """Wake the tiers' idle workers once this transaction commits."""
    for tier in sorted(tiers):
        c.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel(tier)})
