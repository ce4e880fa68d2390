"""Firing delay: scheduled instant -> handler start, at 1,000 runs/s through `cronlink run`'s
roles (scheduler, light worker) in one process on a real SQLite file.

1,000 jobs fire every second; each handler records how late it started. Prints JSON with
the percentiles, the earliest start (never early means >= 0) and the runs measured.
Run: .venv/bin/python bench/firing_delay_bench.py [--jobs N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from cronlink.app import App
from cronlink.config import Settings
from cronlink.context import RunContext
from cronlink.records.runs import Tier
from cronlink.runtime import run_roles

delays: list[float] = []


async def record(ctx: RunContext) -> None:
    assert ctx.scheduled_for is not None
    delays.append(time.time() - ctx.scheduled_for.timestamp())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    args = parser.parse_args()
    app = App()
    for i in range(args.jobs):
        app.job("* * * * * *", name=f"tick-{i}", overlap="allow")(record)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{Path(folder) / 'bench.db'}", poll=0.5)
        stop = asyncio.Event()
        roles = asyncio.create_task(
            run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT,), stop=stop)
        )
        await asyncio.sleep(args.warmup)
        measured_from = len(delays)
        await asyncio.sleep(args.seconds)
        window = delays[measured_from:]
        stop.set()
        await roles
    ms = [d * 1000 for d in window]
    print(
        json.dumps(
            {
                "benchmark": "firing_delay",
                "jobs_every_second": args.jobs,
                "runs_measured": len(ms),
                "runs_per_s": round(len(ms) / args.seconds),
                "p50_ms": round(statistics.median(ms), 1),
                "p95_ms": round(percentile(ms, 0.95), 1),
                "p99_ms": round(percentile(ms, 0.99), 1),
                "max_ms": round(max(ms), 1),
                "earliest_ms": round(min(ms), 1),
                "goal": "p50 <= 50 ms, p99 <= 500 ms, never early",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
