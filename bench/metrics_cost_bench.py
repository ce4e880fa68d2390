"""What the metrics cost the queue: the queue benchmark's workload (no-op light runs through
real worker processes, bench/queue_bench.py) with the workers' metrics on and off, in
alternating rounds so that drift on the machine falls on both alike.

Prints JSON: the median runs/s of each and the cost in percent (goal: under 5%).
Run: .venv/bin/python bench/metrics_cost_bench.py [--runs N] [--rounds R] [--workers W]
     [--mode one_run_per_transaction|batched_claims_and_group_commit] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from queue_bench import MODES, cronlink_rate, fresh_database


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=list(MODES), default="batched_claims_and_group_commit")
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema")
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for metered in (False, True):
            with fresh_database(args.postgres) as url:
                rate = await cronlink_rate(url, args.runs, args.workers, args.mode, metered)
                rates[metered].append(rate)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(json.dumps({
        "benchmark": "metrics_cost", "engine": "postgresql" if args.postgres else "sqlite",
        "mode": args.mode, "workers": args.workers, "runs": args.runs, "rounds": args.rounds,
        "metrics_off_median_runs_per_s": round(off), "metrics_on_median_runs_per_s": round(on),
        "cost_percent": round((off - on) / off * 100, 1), "goal_cost_percent": 5,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
