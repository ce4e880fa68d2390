"""What the metrics cost the queue: the queue benchmark's workload (no-op light runs through
real worker processes, bench/queue_bench.py) with the workers' metrics on and off, in
alternating rounds so that drift on the machine falls on both alike.

With worker processes, the rounds of one setting vary by several percent on 2 cores (three
processes contend for them), more than the cost measured. `--in-process` runs one worker in
this process instead, with nothing to contend with: the figure to quote.

Prints JSON: the median runs/s of each and the cost in percent (goal: under 5%).
Run: .venv/bin/python bench/metrics_cost_bench.py [--runs N] [--rounds R] [--workers W]
     [--mode one_run_per_transaction|batched_claims_and_group_commit] [--postgres URL]
     [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime

from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.runs import Reason, Tier
from cronlink.store import store_for
from queue_bench import MODES, app, cronlink_rate, drained, fresh_database


async def in_process_rate(url: str, runs: int, mode: str, metered: bool) -> float:
    """No-op runs through one worker in this process, timed until the database is empty."""
    store = store_for(url)
    await store.open()
    now, job = datetime.now(UTC), app.get("noop")
    for start in range(0, runs, 100):
        batch = range(start, min(runs, start + 100))
        await asyncio.gather(*(store.enqueue(new_run(job, Reason.API), now) for _ in batch))
    session = new_session(LOOPBACK)
    batch_size, group = MODES[mode]
    worker = Worker(
        store, app.jobs, Tier.LIGHT, LightTier(session), concurrency=100,
        claim_batch=batch_size, group_commit=group, metered=metered,
    )  # fmt: skip
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while not await drained(store):  # noqa: ASYNC110 - the database is what we watch
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - began
    stop.set()
    await task
    await session.close()
    await store.close()
    return runs / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=list(MODES), default="batched_claims_and_group_commit")
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema")
    parser.add_argument("--in-process", action="store_true", help="one worker, this process")
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for metered in (False, True):
            with fresh_database(args.postgres) as url:
                if args.in_process:
                    rate = await in_process_rate(url, args.runs, args.mode, metered)
                else:
                    rate = (
                        await cronlink_rate(
                            url, args.runs, args.workers, "uvloop", mode=args.mode, metered=metered
                        )
                    ).rate
                rates[metered].append(rate)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(json.dumps({
        "benchmark": "metrics_cost", "engine": "postgresql" if args.postgres else "sqlite",
        "mode": args.mode, "workers": "1, in process" if args.in_process else args.workers,
        "runs": args.runs, "rounds": args.rounds,
        "metrics_off_median_runs_per_s": round(off), "metrics_on_median_runs_per_s": round(on),
        "cost_percent": round((off - on) / off * 100, 1), "goal_cost_percent": 5,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
