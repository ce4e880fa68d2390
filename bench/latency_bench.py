"""Enqueue → start latency on PostgreSQL: runs queued at a steady rate by one process, started
by a worker process that polls only every 10 s, so that LISTEN/NOTIFY is what wakes it.

Latency is each run's `started_at - enqueued_at` (one machine, one clock). Prints JSON with
the percentiles of the median round.
Run: .venv/bin/python bench/latency_bench.py --postgres URL [--rate 500] [--seconds 10]
     [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Event

from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import RunFilter, store_for
from queue_bench import app, fresh_database

POLL_S = 10.0


def work(url: str, ready: Event, stop: Event) -> None:
    asyncio.run(_work(url, ready, stop))


async def _work(url: str, ready: Event, stop: Event) -> None:
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    worker = Worker(store, app.jobs, Tier.LIGHT, LightTier(session), poll=POLL_S)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.sleep(1)  # subscribed and idle
    ready.set()
    await asyncio.to_thread(stop.wait)
    stopping.set()
    await task
    await session.close()
    await store.close()


async def one_round(url: str, rate: int, seconds: float) -> tuple[list[float], float]:
    store = store_for(url)
    await store.open()
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    worker = spawn.Process(target=work, args=(url, ready, stop))
    worker.start()
    try:
        assert await asyncio.to_thread(ready.wait, 60), "the worker did not start"
        job = app.get("noop")
        count = int(rate * seconds)
        began = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            await store.enqueue(new_run(job, Reason.API), datetime.now(UTC))
        achieved = count / (time.monotonic() - began)
        queued = RunFilter(state=RunState.QUEUED, limit=1)
        while await store.list_runs(queued):  # noqa: ASYNC110 - the database is what we watch
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        worker.join(30)
        if worker.is_alive():
            worker.kill()
    runs = await store.list_runs(RunFilter(limit=count + 1))
    await store.close()
    assert len(runs) == count
    assert all(r.started_at is not None for r in runs)
    latencies = [(r.started_at - r.enqueued_at).total_seconds() * 1000 for r in runs]  # type: ignore[operator]
    return sorted(latencies), achieved


def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", required=True, help="each round uses a fresh schema in it")
    parser.add_argument("--rate", type=int, default=500, help="runs queued per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds: list[list[float]] = []
    rates: list[float] = []
    for _ in range(args.rounds):
        with fresh_database(args.postgres) as url:
            latencies, achieved = await one_round(url, args.rate, args.seconds)
            rounds.append(latencies)
            rates.append(achieved)
    p99s = [percentile(r, 99) for r in rounds]
    median = rounds[p99s.index(statistics.median_low(p99s))]
    print(
        json.dumps(
            {
                "benchmark": "enqueue_to_start_latency",
                "engine": "postgresql",
                "rate_per_s": args.rate,
                "achieved_rate_per_s_each_round": [round(r) for r in rates],
                "runs_per_round": len(median),
                "rounds": args.rounds,
                "worker_poll_s": POLL_S,
                "median_round_ms": {
                    f"p{p}": round(percentile(median, p), 2) for p in (50, 95, 99, 100)
                },
                "p99_ms_each_round": [round(p, 2) for p in p99s],
                "goal_p99_ms": 20,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
