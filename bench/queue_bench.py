"""Queue throughput: no-op light runs end to end through real worker processes
(claim, execute, complete), with 1, 2 and 4 workers on one database.

Two modes: one run per transaction (each completion claims the next run in its own
transaction), and batched claims plus group commit of completions. With `--postgres` the
same workload also goes through pgqueuer and procrastinate on the same server, when they
are installed (`pip install -e '.[bench]'`), and their ratios to cronlink are reported.

Runs are queued before the clock starts; the clock runs from the moment every worker
process is connected and idle until the database shows no queued or running run.
Prints JSON with medians over rounds (a fresh SQLite file or PostgreSQL schema each round).
Run: .venv/bin/python bench/queue_bench.py [--runs N] [--rounds R] [--workers 1,2,4]
     [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from multiprocessing.synchronize import Event
from pathlib import Path

import psycopg
from sqlalchemy import exists, select

from cronlink.app import App
from cronlink.cli.options import run_async
from cronlink.context import RunContext
from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import RunFilter, Store, store_for
from cronlink.store.schema import runs
from settle import settle

app = App()
MODES: dict[str, tuple[int | None, bool]] = {
    "one_run_per_transaction": (1, False),
    "batched_claims_and_group_commit": (None, True),  # the worker's default
}


@app.job(name="noop")
async def noop(ctx: RunContext) -> None:
    return None


def work(url: str, mode: str, metered: bool, ready: Event, go: Event, stop: Event) -> None:
    """A worker process: connect, report ready, work from `go` until `stop`."""
    run_async(_work(url, mode, metered, ready, go, stop), libuv=True)  # as `cronlink worker`


async def _work(url: str, mode: str, metered: bool, ready: Event, go: Event, stop: Event) -> None:
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    batch, group = MODES[mode]
    worker = Worker(
        store, app.jobs, Tier.LIGHT, LightTier(session),
        concurrency=100, claim_batch=batch, group_commit=group, metered=metered,
    )  # fmt: skip
    ready.set()
    await asyncio.to_thread(go.wait)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.to_thread(stop.wait)
    stopping.set()
    await task
    await session.close()
    await store.close()


_BUSY = select(exists().where(runs.c.state.in_([RunState.QUEUED.value, RunState.RUNNING.value])))


async def drained(store: Store) -> bool:
    """No run queued or running: one probe of the live runs' index, as cheap as the rivals'
    `busy` probes (`rivals.py`), polled as often. Listing runs instead cost the server 15%
    of the no-op workload's time."""
    return not await store.transact(lambda c: c.execute(_BUSY).scalar(), write=False)


async def cronlink_rate(
    url: str, runs: int, workers: int, mode: str, metered: bool = True
) -> float:
    store = store_for(url)
    await store.open()
    now = datetime.now(UTC)
    job = app.get("noop")
    for start in range(0, runs, 100):
        batch = range(start, min(runs, start + 100))
        await asyncio.gather(*(store.enqueue(new_run(job, Reason.API), now) for _ in batch))
    if url.startswith("postgresql"):
        settle(url, "runs")
    spawn = multiprocessing.get_context("spawn")
    go, stop = spawn.Event(), spawn.Event()
    readies = [spawn.Event() for _ in range(workers)]
    processes = [
        spawn.Process(target=work, args=(url, mode, metered, ready, go, stop)) for ready in readies
    ]
    for process in processes:
        process.start()
    try:
        for ready in readies:
            await asyncio.to_thread(ready.wait, 60)
        go.set()
        began = time.perf_counter()
        while not await drained(store):  # noqa: ASYNC110 - the database is what we watch
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - began
    finally:
        stop.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    done = await store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=runs + 1))
    assert len(done) == runs, f"{len(done)} of {runs} runs succeeded"
    await store.close()
    return runs / elapsed


Rate = Callable[[str, int, int], Awaitable[float]]


def rivals() -> dict[str, Rate]:
    """The rival queues that are installed (they are bench-only dependencies)."""
    try:
        from rivals import pgqueuer_rate, procrastinate_rate
    except ImportError:
        return {}
    return {"pgqueuer": pgqueuer_rate, "procrastinate": procrastinate_rate}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema in it")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="which cronlink modes (rivals run with --postgres)"
    )
    parser.add_argument("--rivals", default="pgqueuer,procrastinate", help="'' for none")
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = set(modes) - MODES.keys()
    if unknown:
        choices = ", ".join(MODES)
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))}; choose from {choices}")
    counts = [int(n) for n in args.workers.split(",")]
    result: dict[str, object] = {
        "benchmark": "queue",
        "engine": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs,
        "rounds": args.rounds,
        "goal_runs_per_s": {"4_workers": 2_500, "batched": 10_000},
    }
    contenders: dict[str, Rate] = {mode: partial(cronlink_rate, mode=mode) for mode in modes}
    if args.postgres:
        wanted = set(filter(None, args.rivals.split(",")))
        contenders |= {name: rate for name, rate in rivals().items() if name in wanted}
    for name, rate in contenders.items():
        for workers in counts:
            rates = []
            for _ in range(args.rounds):
                with fresh_database(args.postgres) as url:
                    rates.append(await rate(url, args.runs, workers))
            result[f"{name}_{workers}_workers_median_runs_per_s"] = round(statistics.median(rates))
    # pgqueuer claims and completes in batches, procrastinate one job per query: each is
    # compared with both cronlink modes, so neither ratio flatters by mixing modes.
    for rival in contenders.keys() - MODES.keys():
        for mode in modes:
            for workers in counts:
                ours = result[f"{mode}_{workers}_workers_median_runs_per_s"]
                theirs = result[f"{rival}_{workers}_workers_median_runs_per_s"]
                assert isinstance(ours, int)
                assert isinstance(theirs, int)
                result[f"ratio_{mode}_to_{rival}_{workers}_workers"] = round(ours / theirs, 2)
    print(json.dumps(result, indent=2))


@contextmanager
def fresh_database(base: str | None) -> Iterator[str]:
    """A fresh PostgreSQL schema (dropped afterwards), or a fresh SQLite file."""
    if base is None:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{base}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    asyncio.run(main())
