"""Health-check throughput from one process: N connections probed against the sandbox
provider (its own process, real HTTP on 127.0.0.1) by `Connections.check_all` — a page of
sealed connections read, each token opened, the probe sent with bounded concurrency, each
result judged with damping and the page recorded in one transaction. Checks that every
connection was probed and is healthy. Prints JSON with the median over rounds.

Run: .venv/bin/python bench/health_bench.py [--connections N] [--concurrency C]
     [--rounds R] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.records.connections import Health
from cronlink.store import store_for
from queue_bench import fresh_database
from refresh_bench import sandbox_process


async def one_round(url: str, sandbox: str, count: int, concurrency: int) -> float:
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open()
    session = new_session(LOOPBACK)
    try:
        connections = Connections(
            store, Vault.from_text(generate_key()), Providers.load(), session,
            probe_concurrency=concurrency,
        )  # fmt: skip
        users = [f"user{i}" for i in range(count)]
        async with session.post(f"{sandbox}/sandbox/grants", json={"users": users}) as response:
            minted = await response.json()
        for user, tokens in zip(users, minted, strict=True):
            await connections.add(
                provider="sandbox", owner=user, access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], expires_in=3600,
            )  # fmt: skip
        began = time.perf_counter()
        counts = await connections.check_all()
        elapsed = time.perf_counter() - began
        assert counts["probed"] == count, counts
        healthy = await connections.find(limit=count + 1)
        assert {c.health for c in healthy} == {Health.HEALTHY}
        return elapsed
    finally:
        await session.close()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
            rounds.append(asyncio.run(one_round(url, sandbox, args.connections, args.concurrency)))
    print(
        json.dumps(
            {
                "benchmark": "health",
                "engine": "postgresql" if args.postgres else "sqlite",
                "connections": args.connections,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "median_seconds": round(statistics.median(rounds), 3),
                "median_probes_per_s": round(args.connections / statistics.median(rounds)),
                "goal_probes_per_s": 3000,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
