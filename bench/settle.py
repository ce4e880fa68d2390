"""The queue benchmarks' common start: a queued table as autovacuum keeps a live one."""

from __future__ import annotations

import psycopg


def settle(url: str, table: str) -> None:
    """VACUUM ANALYZE the freshly queued table, as autovacuum keeps a live one, for every
    contender alike. Left to the clock, a table filled a moment before costs the first
    claims a third more server time (30 vs 40 us a run, bench/queue_bench.py), and that
    cost says more about the setup than about the queue."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"VACUUM ANALYZE {table}")
