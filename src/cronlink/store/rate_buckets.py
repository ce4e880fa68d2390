"""Rate-limit buckets shared through the database: one statement per call, on either
engine, so that every `cronlink serve` (and a restarted one) draws on the same bucket.

A bucket is kept as GCRA's theoretical arrival time `tat`: the instant it would be full
again. A call asks for up to `want` tokens and gets as many as fit, each one fitting when,
after it, the bucket is at most `limit` seconds from full (`limit` = burst / rate): `tat`
moves on by `interval` (1 / rate) per token given, and `granted` says how many. Absent
and past buckets are full. The UPSERT reads the old row under its row lock (PostgreSQL) or
the write lock (SQLite), so concurrent calls from any number of processes each see the one
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

# An absent bucket is full: `want` (at most the burst) fits.
_TAKE = """
INSERT INTO rate_buckets (key, tat, granted) VALUES ({key}, {now} + {want} * {interval}, {want})
ON CONFLICT (key) DO UPDATE SET
    granted = {fit},
    tat = {start} + {fit} * {interval}
RETURNING granted, tat
"""


def _take(greatest: str, least: str, whole: str, param: str) -> str:
    names = {n: param.format(n) for n in ("key", "now", "interval", "limit", "want")}
    now, limit, interval = names["now"], names["limit"], names["interval"]
    start = f"{greatest}({least}(rate_buckets.tat, {now} + {limit}), {now})"
    room = whole.format(f"({now} + {limit} - {start}) / {interval}")
    fit = f"{greatest}({least}({names['want']}, {room}), 0)"
    return _TAKE.format(start=start, fit=fit, **names)


# Whole tokens: SQLite's CAST truncates (toward zero, and `fit` is at least 0 anyway);
# PostgreSQL's rounds, so it takes floor().
SQLITE_TAKE = _take("max", "min", "CAST({} AS INTEGER)", ":{}")
POSTGRES_TAKE = _take("greatest", "least", "CAST(floor({}) AS BIGINT)", "%({})s")


def _params(key: str, want: int, interval: float, limit: float, now: float) -> dict[str, Any]:
    return {"key": key[:200], "want": want, "now": now, "interval": interval, "limit": limit}


def take_sqlite(
    db: sqlite3.Connection, key: str, want: int, interval: float, limit: float, now: float
) -> tuple[int, float]:
    granted, tat = db.execute(SQLITE_TAKE, _params(key, want, interval, limit, now)).fetchone()
    return int(granted), float(tat)


async def take_postgres(
    db: AsyncConnection[Any], key: str, want: int, interval: float, limit: float, now: float
) -> tuple[int, float]:
    params = _params(key, want, interval, limit, now)
    row = await (await db.execute(POSTGRES_TAKE, params)).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def forget(c: Connection, now: float) -> int:
    """Delete the buckets that are full again by `now` (as good as absent); how many went."""
    return int(c.execute(delete(rate_buckets).where(rate_buckets.c.tat <= now)).rowcount)
