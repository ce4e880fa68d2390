"""Scheduler throughput: 100,000 schedules all due in the same minute turned into runs.

Prints JSON with the median over rounds (a fresh SQLite file each round).
Run: .venv/bin/python bench/scheduler_bench.py [--schedules N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cronlink.app import build_job
from cronlink.scheduler import Scheduler
from cronlink.store import RunFilter, store_for

T0 = datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)


async def one_round(count: int, folder: Path) -> dict[str, float]:
    jobs = {f"job-{i}": build_job(name=f"job-{i}", schedules=["* * * * *"]) for i in range(count)}
    store = store_for(f"sqlite:///{folder / 'bench.db'}")
    await store.open()
    scheduler = Scheduler(store, jobs)
    await scheduler.sync(T0)
    began = time.perf_counter()
    report = await scheduler.tick(T0 + timedelta(seconds=30))
    elapsed = time.perf_counter() - began
    assert report.started == count, report
    assert len(await store.list_runs(RunFilter(limit=10))) == 10
    await store.close()
    return {"seconds": elapsed, "fires_per_s": count / elapsed}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            results.append(await one_round(args.schedules, Path(folder)))
    print(
        json.dumps(
            {
                "benchmark": "scheduler",
                "schedules": args.schedules,
                "rounds": args.rounds,
                "median_seconds": round(statistics.median(r["seconds"] for r in results), 3),
                "median_fires_per_s": round(statistics.median(r["fires_per_s"] for r in results)),
                "goal_fires_per_s": 10_000,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
