"""Scheduler throughput: 100,000 schedules all due in the same minute turned into runs, by one
or more scheduler processes sharing the database.

Each process registers the jobs and syncs the schedules before the clock starts; the clock
runs from "go" until every process has fired everything due. Afterwards the ledger and the
runs are checked: one run per (job, instant), none twice.
Prints JSON with the median over rounds (a fresh SQLite file or PostgreSQL schema each round).
Run: .venv/bin/python bench/scheduler_bench.py [--schedules N] [--rounds R] [--schedulers S]
     [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event

from cronlink.engine.scheduler import Scheduler
from cronlink.jobs import build_job
from cronlink.store import RunFilter, store_for
from queue_bench import fresh_database

T0 = datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)


def fire(url: str, count: int, ready: Event, go: Event) -> None:
    """A scheduler process: sync the schedules, report ready, fire everything due at "go"."""
    asyncio.run(_fire(url, count, ready, go))


async def _fire(url: str, count: int, ready: Event, go: Event) -> None:
    jobs = {f"job-{i}": build_job(name=f"job-{i}", schedules=["* * * * *"]) for i in range(count)}
    store = store_for(url)
    await store.open(migrate=False)
    scheduler = Scheduler(store, jobs)
    await scheduler.sync(T0)
    ready.set()
    await asyncio.to_thread(go.wait)
    await scheduler.tick(T0 + timedelta(seconds=30))
    await store.close()


async def one_round(url: str, count: int, schedulers: int) -> float:
    store = store_for(url)
    await store.open()
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    readies = [spawn.Event() for _ in range(schedulers)]
    processes = [spawn.Process(target=fire, args=(url, count, r, go)) for r in readies]
    for process in processes:
        process.start()
    try:
        while not all(ready.is_set() for ready in readies):
            assert all(p.exitcode is None for p in processes), "a scheduler failed to start"
            await asyncio.sleep(0.1)
        go.set()
        began = time.perf_counter()
        for process in processes:
            await asyncio.to_thread(process.join)
        elapsed = time.perf_counter() - began
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    assert all(p.exitcode == 0 for p in processes), "a scheduler failed"
    runs = await store.list_runs(RunFilter(limit=count + 1))
    assert len(runs) == count, f"{len(runs)} runs for {count} instants"
    assert len({r.job for r in runs}) == count, "an instant started two runs"
    assert len(await store.ledger(None, None, count + 1)) == count
    await store.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema in it")
    args = parser.parse_args()
    seconds = []
    for _ in range(args.rounds):
        with fresh_database(args.postgres) as url:
            seconds.append(await one_round(url, args.schedules, args.schedulers))
    median = statistics.median(seconds)
    print(
        json.dumps(
            {
                "benchmark": "scheduler",
                "engine": "postgresql" if args.postgres else "sqlite",
                "schedules": args.schedules,
                "schedulers": args.schedulers,
                "rounds": args.rounds,
                "median_seconds": round(median, 3),
                "median_fires_per_s": round(args.schedules / median),
                "goal_seconds": 10,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
