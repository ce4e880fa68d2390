"""Token refresh throughput: N connections whose tokens expire at once, refreshed against
the sandbox provider (its own process, real HTTP on 127.0.0.1) through `Connections.refresh`
— the lease, the re-read, the token request, the compare-and-swap save with its event and
next refresh run — by P processes (as P light workers would), each with up to C in
flight. Checks that none was lost or doubled: the provider saw exactly N refreshes and no
invalid grant, and every connection is at version 2. Prints JSON with the median over
rounds (a fresh database and sandbox each).

Run: .venv/bin/python bench/refresh_bench.py [--connections N] [--processes P]
     [--concurrency C] [--rounds R] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Event

from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.sandbox import Sandbox
from cronlink.store import store_for
from queue_bench import fresh_database


@contextmanager
def sandbox_process() -> Iterator[str]:
    """The sandbox provider in a process of its own (it must not share the measured
    process's event loop); yields its URL."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve_sandbox, args=(theirs,))
    server.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        server.join(10)


def serve_sandbox(pipe: Pipe) -> None:
    """The sandbox in its own process: sends its URL, serves until the pipe closes."""

    async def serve() -> None:
        async with Sandbox() as sandbox:
            pipe.send(sandbox.url)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    asyncio.run(serve())


async def prepare(url: str, sandbox: str, count: int, key: str) -> list[int]:
    """N connections with tokens minted by the sandbox, all expired by the time it returns."""
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open()
    session = new_session(LOOPBACK)
    try:
        connections = Connections(store, Vault.from_text(key), Providers.load(), session)
        users = [f"user{i}" for i in range(count)]
        async with session.post(f"{sandbox}/sandbox/grants", json={"users": users}) as response:
            minted = await response.json()
        ids = []
        for user, tokens in zip(users, minted, strict=True):
            added = await connections.add(
                provider="sandbox", owner=user, access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], expires_in=1,
            )  # fmt: skip
            ids.append(added.id)
        await asyncio.sleep(1)
        return ids
    finally:
        await session.close()
        await store.close()


def refresher(url: str, sandbox: str, key: str, ids: list[int], concurrency: int,
              ready: Event, go: Event, out: Pipe) -> None:  # fmt: skip
    """A process refreshing its share of the connections, as a light worker would."""
    asyncio.run(_refresh_all(url, sandbox, key, ids, concurrency, ready, go, out))


async def _refresh_all(url: str, sandbox: str, key: str, ids: list[int], concurrency: int,
                       ready: Event, go: Event, out: Pipe) -> None:  # fmt: skip
    os.environ["CRONLINK_SANDBOX_URL"] = sandbox
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    connections = Connections(store, Vault.from_text(key), Providers.load(), session)
    gate = asyncio.Semaphore(concurrency)

    async def refresh(connection_id: int) -> int:
        async with gate:
            return (await connections.refresh(connection_id, force=False)).version

    ready.set()
    await asyncio.to_thread(go.wait)
    versions = await asyncio.gather(*(refresh(i) for i in ids))
    out.send(sorted(set(versions)))
    await session.close()
    await store.close()


async def sandbox_stats(sandbox: str) -> dict[str, int]:
    session = new_session(LOOPBACK)
    try:
        async with session.get(f"{sandbox}/sandbox/stats") as response:
            return dict(await response.json())
    finally:
        await session.close()


def one_round(url: str, sandbox: str, args: argparse.Namespace) -> float:
    key = generate_key()
    ids = asyncio.run(prepare(url, sandbox, args.connections, key))
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    workers = []
    for share in range(args.processes):
        ready, (ours, theirs) = spawn.Event(), spawn.Pipe()
        mine = ids[share :: args.processes]
        process = spawn.Process(
            target=refresher,
            args=(url, sandbox, key, mine, args.concurrency, ready, go, theirs),
        )
        process.start()
        workers.append((process, ready, ours))
    for _, ready, _ in workers:
        ready.wait(60)
    began = time.perf_counter()
    go.set()
    versions = {v for _, _, ours in workers for v in ours.recv()}
    elapsed = time.perf_counter() - began
    for process, _, _ in workers:
        process.join(30)
    stats = asyncio.run(sandbox_stats(sandbox))
    assert versions == {2}, f"versions {sorted(versions)}"
    assert stats["refreshes"] == args.connections, f"{stats['refreshes']} refreshes"
    assert stats["invalid_grants"] == 0, stats
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="refreshing processes")
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
            rounds.append(one_round(url, sandbox, args))
    result = {
        "benchmark": "refresh",
        "engine": "postgresql" if args.postgres else "sqlite",
        "connections": args.connections,
        "processes": args.processes,
        "concurrency_per_process": args.concurrency,
        "rounds": args.rounds,
        "median_seconds": round(statistics.median(rounds), 3),
        "median_refreshes_per_s": round(args.connections / statistics.median(rounds)),
        "goal_refreshes_per_s": 1000,
        "lost_or_doubled": 0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
