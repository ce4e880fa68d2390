"""Queue throughput: no-op light runs end to end through real worker processes
(claim, execute, complete), with 1, 2 and 4 workers on one database.

Two modes: one run per transaction (each completion claims the next run in its own
transaction), and batched claims plus group commit of completions. With `--postgres` the
same workload also goes through pgqueuer and procrastinate on the same server, when they
are installed (`pip install -e '.[bench]'`), and their ratios to cronlink are reported.

Runs are queued before the clock starts. Every contender races the same way (`race.py`):
its worker processes connect, one signal starts them all on the same event loop
(`--loop`), and the clock stops when the database shows no unfinished job. A first round
of `--runs` per contender and worker count (and a longer one if that was short) sizes the
rounds that count, so that each lasts about `--seconds` and the start and drain checks stay
under 1% of it (each round reports both).
Prints JSON with medians over rounds (a fresh SQLite file or PostgreSQL schema each round),
the machine, the command, and each engine's durability settings as cronlink's connections
see them.
With `--traced`, the workers trace (`pip install -e '.[otel]'`) and export over OTLP/HTTP
to a receiver this script serves on 127.0.0.1, which decodes and counts the spans.
Run: .venv/bin/python bench/queue_bench.py [--runs N] [--seconds S] [--rounds R]
     [--workers 1,2,4] [--loop uvloop|asyncio] [--postgres URL] [--traced]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from sqlalchemy import exists, select

from cronlink.app import App
from cronlink.context import RunContext
from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.observe import tracing
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import RunFilter, Store, store_for
from cronlink.store.schema import runs
from machine import stamped
from race import LOOPS, Round, Signals, race, run_on
from settle import settle

app = App()
MODES: dict[str, tuple[int | None, bool]] = {
    "one_run_per_transaction": (1, False),
    "batched_claims_and_group_commit": (None, True),  # the worker's default
}


@app.job(name="noop")
async def noop(ctx: RunContext) -> None:
    return None


def work(url: str, mode: str, metered: bool, loop: str, signals: Signals) -> None:
    """A worker process: connect, report ready, work from "go" until "stop"."""
    run_on(loop, _work(url, mode, metered, signals))


async def _work(url: str, mode: str, metered: bool, signals: Signals) -> None:
    tracing.start()  # as a role starts: on when the bench set OTEL_EXPORTER_OTLP_ENDPOINT
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    batch, group = MODES[mode]
    worker = Worker(
        store, app.jobs, Tier.LIGHT, LightTier(session),
        concurrency=100, claim_batch=batch, group_commit=group, metered=metered,
    )  # fmt: skip
    if await signals.started():
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        await signals.stop.wait()
        stopping.set()
        await task
    await session.close()
    await store.close()
    await asyncio.to_thread(tracing.stop)


_BUSY = select(exists().where(runs.c.state.in_([RunState.QUEUED.value, RunState.RUNNING.value])))


async def drained(store: Store) -> bool:
    """No run queued or running: one probe of the live runs' index, as cheap as the rivals'
    `busy` probes (`rivals.py`), polled as often. Listing runs instead cost the server 15%
    of the no-op workload's time."""
    return not await store.transact(lambda c: c.execute(_BUSY).scalar(), write=False)


async def cronlink_rate(
    url: str, runs: int, workers: int, loop: str, *, mode: str, metered: bool = True
) -> Round:
    """A round of cronlink's workers in `mode` over `runs` queued no-op runs."""
    store = store_for(url)
    await store.open()
    now = datetime.now(UTC)
    job = app.get("noop")
    for start in range(0, runs, 100):
        batch = range(start, min(runs, start + 100))
        await asyncio.gather(*(store.enqueue(new_run(job, Reason.API), now) for _ in batch))
    if url.startswith("postgresql"):
        settle(url, "runs")
    child = partial(work, url, mode, metered, loop)
    spawn = multiprocessing.get_context("spawn")
    result = await race(spawn, [child] * workers, runs, lambda: _busy(store))
    done = await store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=runs + 1))
    assert len(done) == runs, f"{len(done)} of {runs} runs succeeded"
    await store.close()
    return result


async def _busy(store: Store) -> bool:
    return not await drained(store)


async def durability(url: str) -> dict[str, str]:
    """The settings that decide what a crash or a power loss can take, read through a
    cronlink connection (SQLite's `synchronous` is per connection)."""
    store = store_for(url)
    await store.open()
    try:
        names: tuple[str, ...]
        if url.startswith("sqlite"):
            names = ("journal_mode", "synchronous")
            sql = [f"PRAGMA {name}" for name in names]
        else:
            names = ("fsync", "synchronous_commit", "wal_sync_method")
            sql = [f"SHOW {name}" for name in names]
        values = await store.transact(
            lambda c: [str(c.exec_driver_sql(q).scalar()) for q in sql], write=False
        )
    finally:
        await store.close()
    if url.startswith("sqlite"):  # PRAGMA synchronous answers a number
        values[1] = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}.get(values[1], values[1])
    return dict(zip(names, values, strict=True))


Rate = Callable[[str, int, int, str], Awaitable[Round]]


def rivals() -> dict[str, Rate]:
    """The rival queues that are installed (they are bench-only dependencies)."""
    try:
        from rivals import pgqueuer_rate, procrastinate_rate
    except ImportError:
        return {}
    return {"pgqueuer": pgqueuer_rate, "procrastinate": procrastinate_rate}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2_000, help="runs of the sizing round")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="every contender's")
    parser.add_argument("--postgres", help="a PostgreSQL URL; each round uses a fresh schema in it")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="which cronlink modes (rivals run with --postgres)"
    )
    parser.add_argument("--rivals", default="pgqueuer,procrastinate", help="'' for none")
    parser.add_argument("--traced", action="store_true", help="workers export traces (OTLP)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = set(modes) - MODES.keys()
    if unknown:
        choices = ", ".join(MODES)
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))}; choose from {choices}")
    counts = [int(n) for n in args.workers.split(",")]
    contenders: dict[str, Rate] = {mode: partial(cronlink_rate, mode=mode) for mode in modes}
    if args.postgres:
        wanted = set(filter(None, args.rivals.split(",")))
        contenders |= {name: rate for name, rate in rivals().items() if name in wanted}
    result: dict[str, Any] = stamped(
        {
            "benchmark": "queue",
            "engine": "postgresql" if args.postgres else "sqlite",
            "loop": args.loop,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "goal_runs_per_s": {"4_workers": 2_500, "batched": 10_000},
            "traced": args.traced,
        }
    )
    receiver = await _receiver() if args.traced else None
    with fresh_database(args.postgres) as url:
        result["durability"] = await durability(url)
    table: dict[str, dict[str, Any]] = {}
    for name, rate in contenders.items():
        for workers in counts:
            table.setdefault(name, {})[str(workers)] = await _measure(rate, workers, args)
    result["contenders"] = table
    if receiver is not None:
        result["spans_received"] = receiver.spans
        await receiver.runner.cleanup()
    print(json.dumps(result, indent=2))


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that decodes what it is sent."""

    runner: web.AppRunner
    spans: int = 0

    async def accept(self, request: web.Request) -> web.Response:
        # Imported here: the otel extra is needed with --traced only.
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        sent = ExportTraceServiceRequest.FromString(await request.read())
        self.spans += sum(len(s.spans) for r in sent.resource_spans for s in r.scope_spans)
        return web.Response(content_type="application/x-protobuf")


async def _receiver() -> Receiver:
    """Serve a receiver and point the workers (started after this) at it."""
    server = web.Application()
    receiver = Receiver(web.AppRunner(server))
    server.router.add_post("/v1/traces", receiver.accept)
    await receiver.runner.setup()
    site = web.TCPSite(receiver.runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    return receiver


async def _measure(rate: Rate, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Sizing rounds (not counted), then `args.rounds` rounds of `args.seconds` each."""
    runs = args.runs
    for _ in range(3):  # a short round understates the rate: size again from a longer one
        with fresh_database(args.postgres) as url:
            sizing = await rate(url, runs, workers, args.loop)
        runs = max(args.runs, math.ceil(sizing.rate * args.seconds))
        if sizing.elapsed >= args.seconds / 2 or runs == args.runs:
            break
    rounds: list[Round] = []
    for _ in range(args.rounds):
        with fresh_database(args.postgres) as url:
            rounds.append(await rate(url, runs, workers, args.loop))
    return {
        "median_runs_per_s": round(statistics.median(r.rate for r in rounds)),
        "max_overhead_fraction": round(max(r.overhead for r in rounds), 5),
        "rounds": [r.as_json() for r in rounds],
    }


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
