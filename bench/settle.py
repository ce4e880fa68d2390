"""The queue benchmarks' common start: a queued table as autovacuum keeps a live one."""

from __future__ import annotations

import psycopg


def settle(url: str, table: str) -> None:
    """VACUUM ANALYZE the freshly queued table, for every contender alike: a live table has
    the statistics autovacuum keeps, and they change plans. Without them, cronlink's claims
    once looked fine while an analyzed table made each one cost 0.5 ms of planning (see
    `postgres._generic_plans`); a table filled a moment before also costs the first batched
    claims a third more server time (40 vs 30 us a run), which says more about the setup
    than about the queue."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"VACUUM ANALYZE {table}")
