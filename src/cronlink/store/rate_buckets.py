"""Rate-limit buckets shared through the database: one statement per call, on either
engine, so that every `cronlink serve` (and a restarted one) draws on the same bucket.

A bucket is kept as GCRA's theoretical arrival time `tat`: the instant it would be full
again. A call fits when, after it, the bucket is at most `limit` seconds from full
(`limit` = burst / rate): then `tat` moves on by `interval` (1 / rate). Absent and past
buckets are full. The UPSERT reads the old row under its row lock (PostgreSQL) or the
write lock (SQLite), so concurrent calls from any number of processes each see the one
before. A `tat` further ahead than `limit` can only come from a clock set back: it counts
as `limit`, so that a clock jump costs one interval, not the jump.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete

from cronlink.store.schema import rate_buckets

if TYPE_CHECKING:
    import sqlite3

    from psycopg import AsyncConnection
    from sqlalchemy import Connection

_TAKE = """
INSERT INTO rate_buckets (key, tat, taken) VALUES ({key}, {now} + {interval}, true)
ON CONFLICT (key) DO UPDATE SET
    taken = {start} + {interval} - {now} <= {limit},
    tat = CASE WHEN {start} + {interval} - {now} <= {limit} THEN {start} + {interval}
               ELSE {start} END
RETURNING taken, tat
"""


def _take(greatest: str, least: str, param: str) -> str:
    names = {n: param.format(n) for n in ("key", "now", "interval", "limit")}
    start = (
        f"{greatest}({least}(rate_buckets.tat, {names['now']} + {names['limit']}), {names['now']})"
    )
    return _TAKE.format(start=start, **names)


SQLITE_TAKE = _take("max", "min", ":{}")
POSTGRES_TAKE = _take("greatest", "least", "%({})s")


def _params(key: str, interval: float, limit: float, now: float) -> dict[str, Any]:
    return {"key": key[:200], "now": now, "interval": interval, "limit": limit}


def take_sqlite(
    db: sqlite3.Connection, key: str, interval: float, limit: float, now: float
) -> tuple[bool, float]:
    taken, tat = db.execute(SQLITE_TAKE, _params(key, interval, limit, now)).fetchone()
    return bool(taken), float(tat)


async def take_postgres(
    db: AsyncConnection[Any], key: str, interval: float, limit: float, now: float
) -> tuple[bool, float]:
    row = await (await db.execute(POSTGRES_TAKE, _params(key, interval, limit, now))).fetchone()
    assert row is not None
    return bool(row[0]), float(row[1])


def forget(c: Connection, now: float) -> int:
    """Delete the buckets that are full again by `now` (as good as absent)."""
    return int(c.execute(delete(rate_buckets).where(rate_buckets.c.tat <= now)).rowcount)
