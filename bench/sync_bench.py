"""The `sync` step: N records copied from the sandbox's source to its destination (its
own process, real HTTP on 127.0.0.1) in pages of 500 and batches of 500, with a
checkpoint after every batch, by a heavy run (a child process, as in `cronlink run`).
Records/s is N over the event's processing time (`finished_at - started_at`, written by
cronlink); the destination is checked to hold each record exactly once. Median over
rounds (a fresh database and sandbox each).

With `--to-crm`, the records go to the sandbox's CRM through a second connection of the
same owner (a step naming it: `destination.connection`), upserted by external id in
batches of `--batch` (the CRM's own limit is raised to match); the CRM is checked to hold
each record once.

Run: .venv/bin/python bench/sync_bench.py [--records N] [--rounds R] [--postgres URL]
                                          [--to-crm [--batch 100]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from collections import Counter
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
SYNC: list[dict[str, Any]] = [
    {
        "name": "copy",
        "sync": {
            "source": {"path": "/api/records", "page_size": 500},
            "destination": {"path": "/api/records", "batch_size": 500},
        },
    }
]
BENCH_MODULES = ("queue_bench", "refresh_bench", "sync_bench")


def to_crm(batch: int) -> list[dict[str, Any]]:
    return [{
        "name": "copy",
        "sync": {
            "source": {"path": "/api/records", "page_size": 500},
            "destination": {"path": "/crm/api/contacts/batch", "connection": "crm",
                            "batch_size": batch, "rejected": "errors"},
            "transform": "sync_bench:to_contact",
        },
    }]  # fmt: skip


def to_contact(record: dict[str, object]) -> dict[str, object]:
    """A mail record as a CRM contact, upserted by its external id."""
    return {"external_id": f"rec-{record['id']}", "email": record["email"], "name": record["name"]}


async def one_round(url: str, sandbox: str, records: int, crm_batch: int | None) -> float:
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open()
    session = new_session(LOOPBACK)
    stop = asyncio.Event()
    try:
        async with session.post(f"{sandbox}/sandbox/records", json={"count": records}) as r:
            assert r.status == 200
        async with session.post(f"{sandbox}/sandbox/grants", json={"user": "bench"}) as r:
            tokens = await r.json()
        providers = Providers.load()
        connections = Connections(store, Vault.from_text(generate_key()), providers, session)
        automations = Automations(
            store, providers, session, connections, process_job=JOBS["process-automation"]
        )
        connection = await connections.add(
            provider="sandbox", owner="bench", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=24 * 3600,
        )  # fmt: skip
        steps = SYNC
        if crm_batch is not None:
            steps = to_crm(crm_batch)
            switch = {"crm_batch_limit": crm_batch}
            async with session.post(f"{sandbox}/sandbox/switches", json=switch) as r:
                assert r.status == 200
            async with session.post(f"{sandbox}/sandbox/crm/grants", json={"user": "bench"}) as r:
                crm = await r.json()
            await connections.add(
                provider="sandbox-crm", owner="bench", access_token=crm["access_token"],
                refresh_token=crm["refresh_token"], expires_in=24 * 3600, name="crm",
            )  # fmt: skip
        automation = await automations.add(
            name="copy", connection_id=connection.id, schedule="0 2 * * *", steps=steps,
            every=timedelta(minutes=1),
        )  # fmt: skip
        event = await automations.run_now(automation.id)
        worker = Worker(
            store, JOBS, Tier.HEAVY, HeavyTier(session, preload=BENCH_MODULES),
            connections=connections, automations=automations, poll=0.05,
        )  # fmt: skip
        running = asyncio.create_task(worker.run(stop))
        while (done := await store.automations.event(event.id)).state is not EventState.DONE:
            assert done.state is not EventState.DEAD_LETTER, done.error
            await asyncio.sleep(0.05)
        stop.set()
        await running
        if crm_batch is None:
            async with session.get(f"{sandbox}/sandbox/sink/records") as r:
                written = Counter(record["id"] for record in await r.json())
            assert len(written) == records, len(written)
            assert max(written.values()) == 1
        else:
            async with session.get(f"{sandbox}/sandbox/crm/stats") as r:
                stats = await r.json()
            assert (stats["contacts"], stats["created"]) == (records, records), stats
            assert (stats["duplicates"], stats["updated"]) == (0, 0), stats
        assert done.started_at is not None
        assert done.finished_at is not None
        return (done.finished_at - done.started_at).total_seconds()
    finally:
        stop.set()
        await session.close()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema")
    parser.add_argument("--to-crm", action="store_true",
                        help="write to the sandbox's CRM through a second connection")  # fmt: skip
    parser.add_argument("--batch", type=int, default=100, help="CRM records per batch")
    args = parser.parse_args()
    crm_batch = args.batch if args.to_crm else None
    rounds = []
    for _ in range(args.rounds):
        with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
            rounds.append(asyncio.run(one_round(url, sandbox, args.records, crm_batch)))
    seconds = statistics.median(rounds)
    print(json.dumps({
        "benchmark": "sync", "engine": "postgresql" if args.postgres else "sqlite",
        "destination": "crm (a second connection)" if args.to_crm else "same provider",
        "records": args.records, "page_size": 500, "batch_size": crm_batch or 500,
        "rounds": args.rounds, "median_seconds": round(seconds, 3),
        "median_records_per_s": round(args.records / seconds),
        "goal_records_per_s": 20_000 if args.to_crm else 5000, "written_twice": 0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
