"""Handlers of the fault tests, importable by the real `cronlink` processes they start."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from psycopg_pool import AsyncConnectionPool

from cronlink import App, RunContext

app = App()
EFFECTS_TABLE = """
CREATE TABLE effects (
    key text PRIMARY KEY,
    run_id int NOT NULL,
    deliveries int NOT NULL DEFAULT 1
)
"""
_pools: dict[str, asyncio.Task[AsyncConnectionPool]] = {}


async def tick(ctx: RunContext) -> int:
    """Long enough that a killed worker is usually holding one."""
    await asyncio.sleep(2)
    return ctx.attempt


@app.job(name="effect", max_attempts=50, min_backoff=0.05, max_backoff=0.5)
async def effect(ctx: RunContext) -> str:
    """A side effect keyed by the run's idempotency key: a redelivered run (its completion
    lost to a database restart) counts a delivery instead of applying the effect twice."""
    pool = await _pool(os.environ["CRONLINK_TEST_EFFECTS_URL"])
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO effects (key, run_id) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET deliveries = effects.deliveries + 1",
            (ctx.idempotency_key, ctx.run_id),
        )
    return ctx.idempotency_key


def deliver(event: Any, ctx: Any) -> dict[str, Any]:
    """An automation step that only says it ran (the event ledger is what is checked)."""
    return {"delivered": event["id"], "attempt": ctx.attempt}


async def _pool(url: str) -> AsyncConnectionPool:
    # A task, so that runs starting together share one pool instead of racing to open theirs.
    if url not in _pools:
        _pools[url] = asyncio.create_task(_open(url))
    return await _pools[url]


async def _open(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=1, max_size=4, open=False)
    await pool.open()
    return pool
