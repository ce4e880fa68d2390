"""Rival PostgreSQL job queues, pgqueuer and procrastinate, run through the queue benchmark.

Each `*_rate` function puts one library through the workload that `queue_bench.py` gives
cronlink, so the numbers compare: install the library's schema where `url` points, enqueue
`runs` no-op jobs in bulk (untimed), start `workers` spawned processes that each connect
and report ready, then time from "go" until the database shows no unfinished job. The
library's own records are then checked: every job claimed once and succeeded once.

`url` may carry `?options=-csearch_path%3D<schema>`: both libraries create their tables,
types and functions unqualified and name no schema in their queries, so everything lands
in, and is found through, the first schema of the search path.

Each library runs as its documentation suggests for throughput, on cronlink's terms:
completion is a row in a logged (crash-safe) table, up to 100 async jobs in flight per
process, asyncio's default event loop, and the worker started only after "go", so its
startup queries are inside the clock as cronlink's are.

- pgqueuer: `QueueManager.run` with `max_concurrent_tasks=100` and dequeues of up to
  `PGQUEUER_BATCH` jobs, on asyncpg: the driver its CLI tries first and its docs
  recommend for throughput (here 1.3 to 3 times its rate on psycopg). The library
  buffers completions and writes them in batches, like cronlink's group commit; it logs
  each job as queued, picked and successful.
- procrastinate: `run_worker_async(concurrency=100)` on its psycopg 3 connector with the
  default pool (a larger pool made no difference). It has no batched fetch: each job is
  claimed by one query and finished by another.

The job table is analyzed once filled, as autovacuum would have done for a queue in
service: without statistics on a table loaded a moment ago, procrastinate's claim query
scans the whole table (4 ms a claim instead of 0.3 ms at 10,000 jobs) and its rate halves.

pgqueuer, asyncpg and procrastinate are bench-only dependencies: nothing in `cronlink`
imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from procrastinate import App, PsycopgConnector

from settle import settle

CONCURRENCY = 100
# pgqueuer requires max_concurrent_tasks >= 2 * batch_size, so 50 is the largest batch that
# keeps 100 jobs in flight.
PGQUEUER_BATCH = 50
POLL_S = 0.02
JOIN_S = 30.0

Child = Callable[[str, Event, Event, Event], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class Probes:
    """SQL reading one library's tables: `busy` is one boolean (is any job unfinished?);
    `tally` is one row (unfinished jobs, claims, successes), read once the workers stop."""

    busy: str
    tally: str


PGQUEUER = Probes(
    busy="SELECT EXISTS (SELECT FROM pgqueuer)",
    tally="""SELECT (SELECT count(*) FROM pgqueuer),
                    count(*) FILTER (WHERE status = 'picked'),
                    count(*) FILTER (WHERE status = 'successful')
             FROM pgqueuer_log""",
)
PROCRASTINATE = Probes(
    busy="SELECT EXISTS (SELECT FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
    tally="""SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'),
                    count(*) FILTER (WHERE type = 'started'),
                    count(*) FILTER (WHERE type = 'succeeded')
             FROM procrastinate_events""",
)


async def pgqueuer_rate(url: str, runs: int, workers: int) -> float:
    """Jobs per second through pgqueuer's `QueueManager` in `workers` processes."""
    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        await queries.enqueue(["noop"] * runs, [None] * runs, [0] * runs)
    finally:
        await connection.close()
    settle(url, "pgqueuer")
    return await _race(url, runs, workers, _pgqueuer_child, PGQUEUER)


async def procrastinate_rate(url: str, runs: int, workers: int) -> float:
    """Jobs per second through procrastinate's worker in `workers` processes."""
    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.tasks["noop"].batch_defer_async(*({} for _ in range(runs)))
    settle(url, "procrastinate_jobs")
    return await _race(url, runs, workers, _procrastinate_child, PROCRASTINATE)


def _pgqueuer_child(url: str, ready: Event, go: Event, stop: Event) -> None:
    asyncio.run(_pgqueuer_work(url, ready, go, stop))


async def _pgqueuer_work(url: str, ready: Event, go: Event, stop: Event) -> None:
    connection = await asyncpg.connect(url)
    try:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        manager.entrypoint("noop")(_pgqueuer_noop)
        await _serve(
            ready,
            go,
            stop,
            lambda: manager.run(batch_size=PGQUEUER_BATCH, max_concurrent_tasks=CONCURRENCY),
            lambda _: manager.shutdown.set(),
        )
    finally:
        await connection.close()


async def _pgqueuer_noop(job: Job) -> None:
    return None


def _procrastinate_child(url: str, ready: Event, go: Event, stop: Event) -> None:
    asyncio.run(_procrastinate_work(url, ready, go, stop))


async def _procrastinate_work(url: str, ready: Event, go: Event, stop: Event) -> None:
    app = _procrastinate_app(url)
    async with app.open_async():
        # Cancelling its task is how procrastinate asks a worker to stop gracefully.
        await _serve(
            ready,
            go,
            stop,
            lambda: app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False),
            lambda worker: worker.cancel(),
        )


def _procrastinate_app(url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=url))
    app.task(name="noop")(_procrastinate_noop)
    return app


async def _procrastinate_noop() -> None:
    return None


async def _serve(
    ready: Event,
    go: Event,
    stop: Event,
    run: Callable[[], Awaitable[None]],
    halt: Callable[[asyncio.Future[None]], object],
) -> None:
    """Report ready, `run` the worker from `go` until `stop`, then `halt` it and wait.

    A worker that fails ends the process early, which is how the parent notices.
    """
    ready.set()
    await _until(go, stop)
    if stop.is_set():
        return
    worker = asyncio.ensure_future(run())
    stopped = asyncio.ensure_future(_until(stop))
    await asyncio.wait((worker, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    halt(worker)
    with contextlib.suppress(asyncio.CancelledError):
        await worker


async def _until(*events: Event) -> None:
    # A multiprocessing event cannot wake an event loop, and a thread blocked on one would
    # outlive a worker that failed.
    while not any(event.is_set() for event in events):  # noqa: ASYNC110 - so poll
        await asyncio.sleep(POLL_S)


async def _race(url: str, runs: int, workers: int, child: Child, probes: Probes) -> float:
    """Time `workers` processes running `child` over the queued jobs, check the tally,
    and return jobs per second."""
    spawn = multiprocessing.get_context("spawn")
    go, stop = spawn.Event(), spawn.Event()
    readies = [spawn.Event() for _ in range(workers)]
    processes: list[BaseProcess] = []
    try:
        for ready in readies:
            process = spawn.Process(target=child, args=(url, ready, go, stop))
            process.start()
            processes.append(process)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:

            async def all_ready() -> bool:
                return all(ready.is_set() for ready in readies)

            async def drained() -> bool:
                row = await (await connection.execute(probes.busy)).fetchone()
                return row is not None and not row[0]

            await _watch(all_ready, processes)
            go.set()
            began = time.perf_counter()
            await _watch(drained, processes)
            elapsed = time.perf_counter() - began
    finally:
        _stop(processes, stop)
    await _check(url, probes, runs, processes)
    return runs / elapsed


async def _watch(done: Callable[[], Awaitable[bool]], processes: Sequence[BaseProcess]) -> None:
    """Poll `done` until true; raise if a worker process dies meanwhile."""
    while not await done():
        if not all(process.is_alive() for process in processes):
            raise RuntimeError("a worker process died; its traceback is above")
        await asyncio.sleep(POLL_S)


def _stop(processes: Sequence[BaseProcess], stop: Event) -> None:
    """Ask every worker process to stop; kill any still running after `JOIN_S`."""
    stop.set()
    for process in processes:
        process.join(JOIN_S)
        if process.is_alive():
            process.kill()
            process.join()


async def _check(url: str, probes: Probes, runs: int, processes: Sequence[BaseProcess]) -> None:
    """Raise unless every job was claimed once and succeeded, and every worker exited 0."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        row = await (await connection.execute(probes.tally)).fetchone()
    if row != (0, runs, runs):
        unfinished, claims, successes = row or (None, None, None)
        raise RuntimeError(
            f"{runs} jobs: {unfinished} unfinished, {claims} claims, {successes} successes"
        )
    codes = [process.exitcode for process in processes]
    if any(codes):
        raise RuntimeError(f"worker processes exited with {codes}")
