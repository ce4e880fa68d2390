"""Queue throughput: no-op light runs end to end through the real worker
(claim, execute, complete): one run per transaction (each completion claims the next run
in its own transaction), and with batched claims plus group commit of completions.

Prints JSON with medians over rounds (a fresh SQLite file each round).
Run: .venv/bin/python bench/queue_bench.py [--runs N] [--rounds R] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from cronlink.app import App
from cronlink.context import RunContext
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records import Reason, RunState, Tier
from cronlink.store import RunFilter, Store, store_for
from cronlink.tiers import LightTier
from cronlink.worker import Worker

app = App()


@app.job(name="noop")
async def noop(ctx: RunContext) -> None:
    return None


async def drained(store: Store) -> bool:
    for state in (RunState.QUEUED, RunState.RUNNING):
        if await store.list_runs(RunFilter(state=state, limit=1)):
            return False
    return True


async def one_round(
    count: int, claim_batch: int, group: bool, folder: Path, url: str | None = None
) -> float:
    store = store_for(url or f"sqlite:///{folder / 'bench.db'}")
    await store.open()
    now = datetime.now(UTC)
    for _ in range(count):
        await store.enqueue(new_run(app.get("noop"), Reason.API), now)
    session = new_session()
    worker = Worker(
        store,
        app.jobs,
        Tier.LIGHT,
        LightTier(session),
        concurrency=100,
        claim_batch=claim_batch,
        group_commit=group,
    )
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while not await drained(store):  # noqa: ASYNC110 - the database is what we watch
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    stop.set()
    await task
    done = await store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=count + 1))
    assert len(done) == count
    await session.close()
    await store.close()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema in it")
    args = parser.parse_args()
    result: dict[str, object] = {
        "benchmark": "queue",
        "engine": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs,
        "rounds": args.rounds,
    }
    modes = [
        ("one_run_per_transaction", 1, False),
        ("batched_claims_and_group_commit", 100, True),
    ]
    for label, batch, group in modes:
        rates = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder, _database(args.postgres) as url:
                rates.append(await one_round(args.runs, batch, group, Path(folder), url))
        result[f"{label}_median_runs_per_s"] = round(statistics.median(rates))
    result["goal_runs_per_s"] = 5_000
    print(json.dumps(result, indent=2))


@contextmanager
def _database(base: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL schema (dropped afterwards), or None for a SQLite file."""
    if base is None:
        yield None
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{base}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    asyncio.run(main())
