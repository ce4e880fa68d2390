"""Helpers that run a real worker against a real store until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from aiohttp.abc import AbstractResolver

from cronlink.egress import LOOPBACK, EgressPolicy
from cronlink.engine.tiers import HeavyTier, LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import Job, new_run
from cronlink.records.runs import Reason, Run, Tier
from cronlink.store import Store
from tests.acceptance.handlers import app


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_worker(
    store: Store,
    tier: Tier,
    jobs: Mapping[str, Job] | None = None,
    egress: EgressPolicy = LOOPBACK,
    resolver: AbstractResolver | None = None,
    **options: object,
) -> AsyncIterator[Worker]:
    session = new_session(egress, resolver=resolver)
    executor = LightTier(session) if tier is Tier.LIGHT else HeavyTier(session)
    settings: dict[str, object] = {"poll": 0.05, "heartbeat": timedelta(seconds=0.2)}
    settings.update(options)
    worker = Worker(store, jobs or app.jobs, tier, executor, **settings)  # type: ignore[arg-type]
    stop = asyncio.Event()
    await worker.alive()  # seen at once, as `cronlink run` makes its workers
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
        await session.close()


async def enqueue(store: Store, job: str, payload: object = None) -> int:
    return await store.enqueue(
        new_run(app.get(job), Reason.API, payload=payload), datetime.now(UTC)
    )


async def finished(store: Store, run_id: int, within: float = 20) -> Run:
    async def done() -> bool:
        run = await store.get_run(run_id)
        return run.state.finished

    await wait_until(done, within)
    return await store.get_run(run_id)
