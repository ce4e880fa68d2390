"""The hot statements' generic plans, as a pooled connection keeps them (psycopg prepares
them; `postgres._generic_plans` forces generic plans): on a table with statistics they
must reach runs by primary key, never by scanning every run or every running run."""

from __future__ import annotations

import re

import psycopg
import pytest

from cronlink.store import store_for
from cronlink.store.postgres import PostgresStore
from cronlink.store.postgres_hot import _COMPLETE, _COMPLETE_ONE, _turn
from tests.postgres import fresh_schema

# A backlog (every run queued, as when workers start behind) and a live table (mostly
# finished runs, a thousand queued, a few hundred running): the plans differ between them.
TABLES = {
    "backlog": (10_000, 0, 0),
    "live": (50_000, 49_000, 48_700),
}
FILL = """
INSERT INTO runs (job, tier, reason, state, enqueued_at, not_before, attempt, max_attempts,
    overlap, cancel_requested, lease_token, lease_expires_at)
SELECT 'job-' || (n %% 50), 'light', 'schedule', s, n, n, 1, 1, 'allow', false,
    CASE WHEN s = 'running' THEN md5(n::text) END, CASE WHEN s = 'running' THEN n END
FROM generate_series(1, %(rows)s) AS n,
    LATERAL (SELECT CASE WHEN n > %(queued_after)s THEN 'queued'
        WHEN n > %(running_after)s THEN 'running' ELSE 'succeeded' END AS s) AS state
"""
TURNS = {
    "one attempt, then claim": _turn(_COMPLETE_ONE, False, True),
    "attempts with log lines, then claim": _turn(_COMPLETE, True, True),
    "claim": _turn(None, False, True),
}


def generic_plan(db: psycopg.Connection[tuple[object, ...]], statement: str) -> str:
    """EXPLAIN of `statement`'s generic plan (parameters unknown), without running it."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", numbered, statement)
    db.execute(f"PREPARE turn AS {prepared}")
    try:
        db.execute("SET plan_cache_mode = force_generic_plan")
        nulls = ", ".join("NULL" for _ in names)
        return "\n".join(str(row[0]) for row in db.execute(f"EXPLAIN EXECUTE turn({nulls})"))
    finally:
        db.execute("DEALLOCATE turn")


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("turn", TURNS)
async def test_a_worker_turn_reaches_runs_by_primary_key(turn: str, table: str) -> None:
    with fresh_schema() as url:
        store = store_for(url)
        await store.open()
        await store.close()
        with psycopg.connect(url, autocommit=True) as db:
            rows, queued_after, running_after = TABLES[table]
            fill = {"rows": rows, "queued_after": queued_after, "running_after": running_after}
            db.execute(FILL, fill)
            db.execute("ANALYZE runs")
            plan = generic_plan(db, TURNS[turn])
    assert "Seq Scan on runs" not in plan, plan
    assert "Index Scan using runs_pkey" in plan, plan
    assert "Hash Semi Join" not in plan, plan
    updates = plan.count("Update on runs")
    assert plan.count("Index Scan using runs_pkey") >= updates, plan


async def test_pooled_connections_keep_generic_plans() -> None:
    with fresh_schema() as url:
        store = PostgresStore(url)
        await store.open()
        try:
            mode = await store._hot(lambda db: _setting(db, "plan_cache_mode"))
        finally:
            await store.close()
    assert mode == "force_generic_plan"


async def _setting(db: psycopg.AsyncConnection[tuple[object, ...]], name: str) -> object:
    row = await (await db.execute(f"SHOW {name}")).fetchone()
    assert row is not None
    return row[0]
