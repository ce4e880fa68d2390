"""Trigger polling at scale: A automations on C connections, each polled every minute at
its own offset, against the sandbox provider (its own process, real HTTP on 127.0.0.1),
by one polling process running `Automations.poll_for` — the code of the poll-triggers
job: leases, credentials, the request (with If-None-Match), the commit of each batch.

Reports the sustained polls/s over the window, the polling process's CPU per 1,000
polls/s (user + system seconds over wall seconds, SQLite included: it runs in-process)
and the lag of the most overdue automation. The feed is quiet (as most are, most
minutes), so after the first round most answers are 304.

With --backlog every automation is due at once, and polls/s is the capacity (the
lag then only says how far behind the backlog started).

Run: .venv/bin/python bench/poll_bench.py [--automations A] [--connections C]
     [--seconds S] [--backlog] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, insert, text

from cronlink.automations import slots
from cronlink.automations.service import Automations
from cronlink.builtin_jobs import connection_jobs
from cronlink.config_models import ConnectionsModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.store import store_for
from cronlink.store.schema import automations as automations_table
from queue_bench import fresh_database
from refresh_bench import sandbox_process

EVERY = timedelta(minutes=1)
PROCESS = {j.name: j for j in connection_jobs(ConnectionsModel())}["process-automation"]


async def prepare(url: str, sandbox: str, key: str, args: argparse.Namespace) -> None:
    """Connections with tokens from the sandbox, then the automations, bulk-inserted (the
    setup is not what is measured), each due at its own offset in the coming minute."""
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open()
    session = new_session(LOOPBACK)
    try:
        connections = Connections(store, Vault.from_text(key), Providers.load(), session)
        users = [f"user{i}" for i in range(args.connections)]
        async with session.post(f"{sandbox}/sandbox/grants", json={"users": users}) as response:
            minted = await response.json()
        ids = []
        for user, tokens in zip(users, minted, strict=True):
            added = await connections.add(
                provider="sandbox", owner=user, access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], expires_in=24 * 3600,
            )  # fmt: skip
            ids.append(added.id)
        start = datetime.now(UTC) + timedelta(seconds=5)
        cursor = json.dumps({"watermark": 0, "token": None, "resume": None, "etag": None,
                             "primed": True})  # fmt: skip
        rows = []
        for n in range(args.automations):
            name = f"auto-{n}"
            offset = slots.offset_for(name, EVERY)
            rows.append({
                "name": name, "connection_id": ids[n % len(ids)], "trigger": "new_item",
                "params": "{}", "steps": '[{"name": "s", "call": "m:f"}]', "schedule": None,
                "interval_s": 60, "offset_s": int(offset.total_seconds()), "concurrency": 1,
                "state": "active", "cursor": cursor,
                "next_poll_at": start if args.backlog else slots.next_slot(start, EVERY, offset),
                "poll_failures": 0, "stalled": False, "advanced_at": start,
                "created_at": start, "updated_at": start,
            })  # fmt: skip
        for chunk in range(0, len(rows), 5000):
            await store.transact(partial(_insert, rows[chunk : chunk + 5000]), write=True)
        if url.startswith("postgresql"):
            # As autovacuum would have by the time 100,000 automations were added one by one.
            await store.transact(lambda c: c.execute(text("ANALYZE automations, connections")),
                                 write=True)  # fmt: skip
    finally:
        await session.close()
        await store.close()


async def measure(url: str, sandbox: str, key: str, seconds: float) -> dict[str, float | None]:
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    try:
        providers = Providers.load()
        connections = Connections(store, Vault.from_text(key), providers, session)
        automations = Automations(store, providers, session, connections, process_job=PROCESS)
        await asyncio.sleep(max(0.0, 5 - 1))  # until the first automations are due
        cpu_before = _cpu()
        began = time.perf_counter()
        tally = await automations.poll_for(timedelta(seconds=seconds), asyncio.Event())
        wall = time.perf_counter() - began
        cpu = _cpu() - cpu_before
    finally:
        await session.close()
        await store.close()
    rate = tally.polls / wall
    return {
        "polls": tally.polls, "failed": tally.failed, "not_modified": tally.not_modified,
        "seconds": round(wall, 1), "polls_per_s": round(rate),
        "cpu_cores": round(cpu / wall, 3),
        "cores_per_1000_polls_per_s": round((cpu / wall) / (rate / 1000), 3) if rate else None,
        "max_lag_s": round(tally.max_lag, 2),
    }  # fmt: skip


def _insert(rows: list[dict[str, Any]], c: Connection) -> None:
    c.execute(insert(automations_table), rows)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--automations", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--postgres", help="a PostgreSQL URL; the run uses a fresh schema")
    parser.add_argument(
        "--backlog", action="store_true",
        help="every automation due at once: measures capacity (keep --seconds short enough "
        "that the backlog lasts), not keeping up with the minute",
    )  # fmt: skip
    args = parser.parse_args()
    key = generate_key()
    with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
        asyncio.run(prepare(url, sandbox, key, args))
        result = asyncio.run(measure(url, sandbox, key, args.seconds))
    print(json.dumps({
        "benchmark": "poll", "engine": "postgresql" if args.postgres else "sqlite",
        "automations": args.automations, "connections": args.connections, "every": "1m",
        "mode": "backlog" if args.backlog else "steady",
        **result,
        "goal_polls_per_s": 1700, "goal_cores_per_1000_polls_per_s": 0.5, "goal_max_lag_s": 10,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
