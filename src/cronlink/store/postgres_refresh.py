"""A token refresh's two statements on PostgreSQL, on plain psycopg: take the lease and read
the row (one UPDATE … RETURNING); save the new secrets, their event and the next refresh
run (one statement of data-modifying CTEs, atomic without a transaction around it).

SQLAlchemy's asyncio layer cost more than these statements (bench/refresh_bench.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cronlink.store.connection_queries import SEALED_COLUMNS, sealed_from_raw
from cronlink.store.run_insert import BOUND, insert_sql, psycopg_param, raw_values
from cronlink.store.schema import ON_DEDUPE_KEY, micros_or_none, to_micros

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection

    from cronlink.records.connections import Sealed
    from cronlink.store.base import SavedRefresh

FOLLOW_UP = insert_sql(
    psycopg_param,
    select_from="saved WHERE CAST(%(job)s AS text) IS NOT NULL",
    suffix=ON_DEDUPE_KEY,
)
"""The next refresh run, queued only if the secrets were saved (no job: no run)."""
TAKE = f"""
UPDATE connections SET refresh_lock = %(token)s, refresh_lock_until = %(until)s
WHERE id = %(cid)s AND (refresh_lock IS NULL OR refresh_lock_until < %(now)s)
RETURNING {", ".join(SEALED_COLUMNS)}
"""
SAVE = f"""
WITH saved AS (
    UPDATE connections SET secrets = %(sealed)s, key_id = %(key)s, version = version + 1,
        expires_at = %(expires)s, refresh_due_at = %(due)s, refreshed_at = %(now)s,
        refresh_failures = 0, last_error = NULL, refresh_lock = NULL,
        refresh_lock_until = NULL, updated_at = %(now)s
    WHERE id = %(cid)s AND refresh_lock = %(token)s AND version = %(seen)s
    RETURNING id),
event AS (
    INSERT INTO connection_events (connection_id, at, kind, detail)
    SELECT id, %(now)s, 'refreshed', %(event)s FROM saved),
follow_up AS ({FOLLOW_UP})
SELECT count(*) FROM saved
"""


async def take(
    db: AsyncConnection[Any], connection_id: int, token: str, until: datetime, now: datetime
) -> Sealed | None:
    params = {"token": token, "until": to_micros(until), "cid": connection_id,
              "now": to_micros(now)}  # fmt: skip
    row = await (await db.execute(TAKE, params)).fetchone()
    return None if row is None else sealed_from_raw(row)


async def save(db: AsyncConnection[Any], connection_id: int, saving: SavedRefresh) -> bool:
    stamp = to_micros(saving.now)
    params: dict[str, Any] = {
        "sealed": saving.ciphertext, "key": saving.key_id,
        "expires": micros_or_none(saving.expires_at),
        "due": micros_or_none(saving.refresh_due_at), "now": stamp, "cid": connection_id,
        "token": saving.token, "seen": saving.version, "event": saving.event,
        **(
            dict.fromkeys(BOUND)
            if saving.follow_up is None
            else raw_values(saving.follow_up, stamp)
        ),
    }  # fmt: skip
    row = await (await db.execute(SAVE, params)).fetchone()
    return bool(row and row[0])
