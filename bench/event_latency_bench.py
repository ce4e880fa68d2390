"""Event to automation run: how long after a poll commits a new event does a heavy run
start processing it? A automations on one sandbox feed (its own process, real HTTP on
127.0.0.1); a new item every I seconds (each becomes A events); `Automations.poll_for`
and a heavy worker (child processes, as in `cronlink run`) in this process. The latency
is the event's `started_at` minus its `seen_at`, both written by cronlink.

Run: .venv/bin/python bench/event_latency_bench.py [--automations A] [--every I]
     [--seconds S] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from datetime import timedelta
from typing import Any

from cronlink.automations.service import Automations
from cronlink.builtin_jobs import connection_jobs
from cronlink.config_models import ConnectionsModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import HeavyTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.records.automations import EventState
from cronlink.records.runs import Tier
from cronlink.store import store_for
from queue_bench import fresh_database
from refresh_bench import sandbox_process

JOBS = {j.name: j for j in connection_jobs(ConnectionsModel())}
STEPS = [{"name": "note", "call": "event_latency_bench:noted"}]
BENCH_MODULES = ("queue_bench", "refresh_bench", "event_latency_bench")
"""What this script imports, which each heavy run's process would import again."""


async def noted(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The step each event runs: it only says which item it was (what is measured is the
    time until it starts)."""
    return {"item": event.get("id")}


async def measure(url: str, sandbox: str, args: argparse.Namespace) -> list[float]:
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open()
    session = new_session(LOOPBACK)
    stop = asyncio.Event()
    try:
        providers = Providers.load()
        connections = Connections(store, Vault.from_text(generate_key()), providers, session)
        automations = Automations(
            store, providers, session, connections, process_job=JOBS["process-automation"]
        )
        async with session.post(f"{sandbox}/sandbox/grants", json={"user": "bench"}) as r:
            tokens = await r.json()
        connection = await connections.add(
            provider="sandbox", owner="bench", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=24 * 3600,
        )  # fmt: skip
        for n in range(args.automations):
            await automations.add(
                name=f"inbox-{n}", connection_id=connection.id, trigger="new_item",
                every=timedelta(seconds=10), steps=STEPS, start="beginning",
            )  # fmt: skip
        wakeup = asyncio.Event()
        automations.wake = lambda tier: wakeup.set()
        worker = Worker(
            store, JOBS, Tier.HEAVY, HeavyTier(session, preload=BENCH_MODULES),
            concurrency=args.concurrency,
            wakeup=wakeup, connections=connections, automations=automations,
        )  # fmt: skip
        roles = [
            asyncio.create_task(worker.run(stop)),
            asyncio.create_task(_poll(automations, stop)),
            asyncio.create_task(_emit(session, sandbox, args.every, stop)),
        ]
        await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(*roles)
        events = await automations.events(state=EventState.DONE, limit=1_000_000)
        return [(e.started_at - e.seen_at).total_seconds() for e in events if e.started_at]
    finally:
        stop.set()
        await session.close()
        await store.close()


async def _poll(automations: Automations, stop: asyncio.Event) -> None:
    """Poll-triggers as a light worker runs it, back to back until told to stop."""
    while not stop.is_set():
        await automations.poll_for(timedelta(seconds=50), stop)


async def _emit(session: object, sandbox: str, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        async with session.post(f"{sandbox}/sandbox/feed", json={"count": 1}) as r:  # type: ignore[attr-defined]
            assert r.status == 200
        await asyncio.sleep(every)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--automations", type=int, default=5)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between new items")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=4, help="heavy worker slots")
    parser.add_argument("--postgres", help="a PostgreSQL URL; the run uses a fresh schema")
    args = parser.parse_args()
    with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
        latencies = sorted(asyncio.run(measure(url, sandbox, args)))
    print(json.dumps({
        "benchmark": "event_to_run", "engine": "postgresql" if args.postgres else "sqlite",
        "automations": args.automations, "item_every_s": args.every, "events": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
        "max_s": round(latencies[-1], 3), "goal_p99_s": 1.0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
