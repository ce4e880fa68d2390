"""PostgreSQL drops every connection of cronlink, again and again, under load: no run is lost,
no process gives up (the pool reconnects, the listener backs off, leases cover the rest)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg

from cronlink.config import Settings
from cronlink.records.runs import RunState, Tier
from cronlink.runtime import run_roles
from cronlink.store import RunFilter, store_for
from tests.acceptance.handlers import app
from tests.acceptance.worker_kit import enqueue, wait_until
from tests.postgres import base_url, fresh_schema

RUNS = 2000


async def kill_backends(name: str) -> int:
    async with await psycopg.AsyncConnection.connect(base_url(), autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (name,),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def test_runs_survive_killed_connections() -> None:
    with fresh_schema() as base:
        name = base.rsplit("%3D", 1)[1]
        url = f"{base}&application_name={name}"
        store = store_for(url)
        await store.open()
        ids = [await enqueue(store, "ok", i) for i in range(RUNS)]
        settings = Settings(
            database_url=url,
            lease=timedelta(seconds=1),
            heartbeat=timedelta(seconds=0.2),
            poll=0.05,
            light_concurrency=20,
        )
        stop = asyncio.Event()
        roles = asyncio.create_task(
            run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT,), stop=stop)
        )
        killed = 0
        for _ in range(8):
            await asyncio.sleep(0.25)
            killed += await kill_backends(name)

        async def all_done() -> bool:
            try:
                done = await store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=RUNS + 1))
            except Exception:
                return False
            return len(done) == RUNS

        await wait_until(all_done, 60)
        stop.set()
        await roles
        assert killed > 0
        states = {(await store.get_run(i)).state for i in ids}
        assert states == {RunState.SUCCEEDED}
        await store.close()
