"""A token refresh's two transactions on SQLite, as plain SQL: take the lease and read the
row (one UPDATE … RETURNING); save the new secrets, their event and the next refresh run.

Like the run hot path (`sqlite_hot`), these are text that sqlite3 keeps prepared: building
SQLAlchemy statements cost more than SQLite did (bench/refresh_bench.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlink.store.connection_queries import SEALED_COLUMNS, sealed_from_raw
from cronlink.store.run_insert import insert_sql, raw_row, raw_values, sqlite_param
from cronlink.store.schema import ON_DEDUPE_KEY, micros_or_none, to_micros

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from cronlink.records.connections import Sealed
    from cronlink.store.base import SavedRefresh

TAKE = f"""
UPDATE connections SET refresh_lock = ?, refresh_lock_until = ?
WHERE id = ? AND (refresh_lock IS NULL OR refresh_lock_until < ?)
RETURNING {", ".join(SEALED_COLUMNS)}
"""
SAVE = """
UPDATE connections SET secrets = ?, key_id = ?, version = version + 1, expires_at = ?,
    refresh_due_at = ?, refreshed_at = ?, refresh_failures = 0, last_error = NULL,
    refresh_lock = NULL, refresh_lock_until = NULL, updated_at = ?
WHERE id = ? AND refresh_lock = ? AND version = ?
"""
EVENT = "INSERT INTO connection_events (connection_id, at, kind, detail) VALUES (?, ?, ?, ?)"
FOLLOW_UP = insert_sql(sqlite_param, suffix=ON_DEDUPE_KEY)


def take(
    db: sqlite3.Connection, connection_id: int, token: str, until: datetime, now: datetime
) -> Sealed | None:
    params = (token, to_micros(until), connection_id, to_micros(now))
    row = db.execute(TAKE, params).fetchone()
    return None if row is None else sealed_from_raw(row)


def save(db: sqlite3.Connection, connection_id: int, saving: SavedRefresh) -> bool:
    stamp = to_micros(saving.now)
    saved = db.execute(
        SAVE,
        (
            saving.ciphertext, saving.key_id, micros_or_none(saving.expires_at),
            micros_or_none(saving.refresh_due_at), stamp, stamp, connection_id, saving.token,
            saving.version,
        ),
    ).rowcount  # fmt: skip
    if not saved:
        return False
    db.execute(EVENT, (connection_id, stamp, "refreshed", saving.event))
    if saving.follow_up is not None:
        db.execute(FOLLOW_UP, raw_row(raw_values(saving.follow_up, stamp)))
    return True
