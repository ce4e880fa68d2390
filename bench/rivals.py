"""Rival PostgreSQL job queues, pgqueuer and procrastinate, run through the queue benchmark.

Each `*_rate` function puts one library through the workload that `queue_bench.py` gives
cronlink, so the numbers compare: install the library's schema where `url` points, enqueue
`runs` no-op jobs in bulk (untimed), then race `workers` spawned processes through them
(`race.race`). The library's own records are then checked: every job claimed once and
succeeded once, in tables that are logged (not `UNLOGGED`).

`url` may carry `?options=-csearch_path%3D<schema>`: both libraries create their tables,
types and functions unqualified and name no schema in their queries, so everything lands
in, and is found through, the first schema of the search path.

Each library runs as its documentation suggests for throughput, on cronlink's terms
(`race.py`): completion is a row in a logged (crash-safe) table, up to 100 async jobs in
flight per process, the same event loop as cronlink's workers (`--loop`: uvloop, as
`cronlink worker` and pgqueuer's own CLI use where it is installed, or asyncio's), and the
worker started only on the same "go" as cronlink's, with no polling interval, so its
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from procrastinate import App, PsycopgConnector

from race import Round, Signals, race, run_on
from settle import settle

CONCURRENCY = 100
# pgqueuer requires max_concurrent_tasks >= 2 * batch_size, so 50 is the largest batch that
# keeps 100 jobs in flight.
PGQUEUER_BATCH = 50


@dataclass(frozen=True, kw_only=True, slots=True)
class Probes:
    """SQL reading one library's tables: `busy` is one boolean (is any job unfinished?);
    `tally` is one row (unfinished jobs, claims, successes), read once the workers stop."""

    busy: str
    tally: str
    tables: tuple[str, ...]


UNLOGGED = """SELECT string_agg(relname, ', ') FROM pg_class
WHERE relname = ANY(%s) AND relpersistence = 'u'
  AND relnamespace = current_schema()::regnamespace"""
PGQUEUER = Probes(
    busy="SELECT EXISTS (SELECT FROM pgqueuer)",
    tally="""SELECT (SELECT count(*) FROM pgqueuer),
                    count(*) FILTER (WHERE status = 'picked'),
                    count(*) FILTER (WHERE status = 'successful')
             FROM pgqueuer_log""",
    tables=("pgqueuer", "pgqueuer_log"),
)
PROCRASTINATE = Probes(
    busy="SELECT EXISTS (SELECT FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
    tally="""SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'),
                    count(*) FILTER (WHERE type = 'started'),
                    count(*) FILTER (WHERE type = 'succeeded')
             FROM procrastinate_events""",
    tables=("procrastinate_jobs", "procrastinate_events"),
)


async def pgqueuer_rate(url: str, runs: int, workers: int, loop: str) -> Round:
    """A round of pgqueuer's `QueueManager` in `workers` processes on `loop`."""
    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        await queries.enqueue(["noop"] * runs, [None] * runs, [0] * runs)
    finally:
        await connection.close()
    settle(url, "pgqueuer")
    return await _race(url, runs, workers, partial(_pgqueuer_child, url, loop), PGQUEUER)


async def procrastinate_rate(url: str, runs: int, workers: int, loop: str) -> Round:
    """A round of procrastinate's worker in `workers` processes on `loop`."""
    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.tasks["noop"].batch_defer_async(*({} for _ in range(runs)))
    settle(url, "procrastinate_jobs")
    child = partial(_procrastinate_child, url, loop)
    return await _race(url, runs, workers, child, PROCRASTINATE)


def _pgqueuer_child(url: str, loop: str, signals: Signals) -> None:
    run_on(loop, _pgqueuer_work(url, signals))


async def _pgqueuer_work(url: str, signals: Signals) -> None:
    connection = await asyncpg.connect(url)
    try:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        manager.entrypoint("noop")(_pgqueuer_noop)
        await _serve(
            signals,
            lambda: manager.run(batch_size=PGQUEUER_BATCH, max_concurrent_tasks=CONCURRENCY),
            lambda _: manager.shutdown.set(),
        )
    finally:
        await connection.close()


async def _pgqueuer_noop(job: Job) -> None:
    return None


def _procrastinate_child(url: str, loop: str, signals: Signals) -> None:
    run_on(loop, _procrastinate_work(url, signals))


async def _procrastinate_work(url: str, signals: Signals) -> None:
    app = _procrastinate_app(url)
    async with app.open_async():
        # Cancelling its task is how procrastinate asks a worker to stop gracefully.
        await _serve(
            signals,
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
    signals: Signals,
    run: Callable[[], Awaitable[None]],
    halt: Callable[[asyncio.Future[None]], object],
) -> None:
    """Report ready, `run` the worker from "go" until "stop", then `halt` it and wait.

    A worker that fails ends the process early, which is how the parent notices.
    """
    if not await signals.started():
        return
    worker = asyncio.ensure_future(run())
    stopped = asyncio.ensure_future(signals.stop.wait())
    await asyncio.wait((worker, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    halt(worker)
    with contextlib.suppress(asyncio.CancelledError):
        await worker


async def _race(
    url: str, runs: int, workers: int, child: Callable[[Signals], None], probes: Probes
) -> Round:
    """Race `workers` processes running `child` over the queued jobs, then check the tally."""
    spawn = multiprocessing.get_context("spawn")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:

        async def busy() -> bool:
            row = await (await connection.execute(probes.busy)).fetchone()
            return row is None or bool(row[0])

        result = await race(spawn, [child] * workers, runs, busy)
    await _check(url, probes, runs)
    return result


async def _check(url: str, probes: Probes, runs: int) -> None:
    """Raise unless every job was claimed once and succeeded, in logged tables."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        row = await (await connection.execute(probes.tally)).fetchone()
        unlogged = await connection.execute(UNLOGGED, [list(probes.tables)])
        if (found := await unlogged.fetchone()) and found[0]:
            raise RuntimeError(f"unlogged (not crash-safe) tables: {found[0]}")
    if row != (0, runs, runs):
        unfinished, claims, successes = row or (None, None, None)
        raise RuntimeError(
            f"{runs} jobs: {unfinished} unfinished, {claims} claims, {successes} successes"
        )
