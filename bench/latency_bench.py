"""Enqueue → handler latency on PostgreSQL: runs queued at a steady rate by one process, run
by a worker process that polls only every 10 s, so that LISTEN/NOTIFY is what wakes it.

Latency runs from each run's `enqueued_at` to the first line of its handler, which stamps
the wall clock (one machine, one clock): after the claim's round trip, not at the instant
the claim was sent (`started_at`, reported beside it). The enqueuer keeps to the schedule
it names (run i due at i / rate), with a few enqueues in flight so that one slow insert
does not hold the rest back; the rate it reached is measured from the stored
`enqueued_at`s. Worker and enqueuer run on `--loop`, uvloop by default as `cronlink worker`
does. Prints JSON with the
percentiles of the median round, the machine and the command.
Run: .venv/bin/python bench/latency_bench.py --postgres URL [--rate 500] [--seconds 10]
     [--rounds 3] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path

from cronlink.app import App
from cronlink.context import RunContext
from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import LightTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import RunFilter, Store, store_for
from machine import stamped
from queue_bench import fresh_database
from race import LOOPS, run_on

POLL_S = 10.0
ENQUEUERS = 4
"""Enqueues in flight at most: fewer than the store's 5 pooled connections."""
app = App()
STARTED: dict[int, float] = {}
"""Each run's handler start (wall clock, seconds), in the worker process."""


@app.job(name="stamp")
async def stamp(ctx: RunContext) -> None:
    STARTED[ctx.run_id] = time.time()


def work(url: str, loop: str, starts: Path, ready: Event, stop: Event) -> None:
    """The worker process: run until `stop`, then write the handlers' starts to `starts`."""
    run_on(loop, _work(url, ready, stop))
    starts.write_text(json.dumps(STARTED))


async def _work(url: str, ready: Event, stop: Event) -> None:
    store = store_for(url)
    await store.open(migrate=False)
    session = new_session(LOOPBACK)
    worker = Worker(store, app.jobs, Tier.LIGHT, LightTier(session), poll=POLL_S)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    await asyncio.sleep(1)  # subscribed and idle
    ready.set()
    await asyncio.to_thread(stop.wait)
    stopping.set()
    await task
    await session.close()
    await store.close()


async def one_round(url: str, rate: int, seconds: float, loop: str) -> dict[str, list[float]]:
    """Latencies (ms, sorted) to the handler and to the claim, and the enqueuer's lag
    behind its schedule (ms), plus the reached rate (runs/s)."""
    store = store_for(url)
    await store.open()
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    with tempfile.TemporaryDirectory() as folder:
        starts = Path(folder) / "starts.json"
        worker = spawn.Process(target=work, args=(url, loop, starts, ready, stop))
        worker.start()
        try:
            assert await asyncio.to_thread(ready.wait, 60), "the worker did not start"
            count = int(rate * seconds)
            due = await _enqueue_steadily(store, rate, count)
            queued = RunFilter(state=RunState.QUEUED, limit=1)
            while await store.list_runs(queued):  # noqa: ASYNC110 - the database is what we watch
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            worker.join(30)
            if worker.is_alive():
                worker.kill()
        handled = {int(k): v for k, v in json.loads(starts.read_text()).items()}
    runs = await store.list_runs(RunFilter(limit=count + 1))
    await store.close()
    assert len(runs) == count == len(handled), (len(runs), count, len(handled))
    enqueued = {r.id: r.enqueued_at.timestamp() for r in runs}
    claimed = {r.id: r.started_at.timestamp() for r in runs if r.started_at is not None}
    order = sorted(enqueued.values())
    return {
        "handler_ms": sorted((handled[i] - enqueued[i]) * 1000 for i in enqueued),
        "claim_ms": sorted((claimed[i] - enqueued[i]) * 1000 for i in claimed),
        "lag_ms": sorted((stamp - due[n]) * 1000 for n, stamp in enumerate(order)),
        "rate": [(count - 1) / (order[-1] - order[0])],
    }


async def _enqueue_steadily(store: Store, rate: int, count: int) -> list[float]:
    """Enqueue run i at `i / rate` seconds from now, by `ENQUEUERS` tasks that each take
    the next run due: one that falls behind is caught up by the others. Each run is stamped
    as its enqueue is sent, and fewer are in flight than the store has connections, so no
    run's wait for a connection counts as a wait for the worker. Returns each run's due
    instant (wall clock)."""
    job = app.get("stamp")
    began = time.time()
    due = [began + i / rate for i in range(count)]
    upcoming = iter(range(count))  # shared: each task takes the next run

    async def enqueuer() -> None:
        for i in upcoming:
            await asyncio.sleep(max(0.0, due[i] - time.time()))
            await store.enqueue(new_run(job, Reason.API), datetime.now(UTC))

    await asyncio.gather(*(enqueuer() for _ in range(ENQUEUERS)))
    return due


def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", required=True, help="each round uses a fresh schema in it")
    parser.add_argument("--rate", type=int, default=500, help="runs queued per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    args = parser.parse_args()
    run_on(args.loop, measure(args))


async def measure(args: argparse.Namespace) -> None:
    """Run the rounds and print the JSON."""
    result = stamped({"benchmark": "enqueue_to_start_latency", "engine": "postgresql"})
    rounds = []
    for _ in range(args.rounds):
        with fresh_database(args.postgres) as url:
            rounds.append(await one_round(url, args.rate, args.seconds, args.loop))
    p99s = [percentile(r["handler_ms"], 99) for r in rounds]
    median = rounds[p99s.index(statistics.median_low(p99s))]
    result |= {
        "loop": args.loop,
        "rate_per_s": args.rate,
        "achieved_rate_per_s_each_round": [round(r["rate"][0], 1) for r in rounds],
        "rate_reached": all(r["rate"][0] >= 0.99 * args.rate for r in rounds),
        "runs_per_round": len(median["handler_ms"]),
        "rounds": args.rounds,
        "worker_poll_s": POLL_S,
        "median_round_ms": _percentiles(median["handler_ms"]),
        "median_round_to_claim_ms": _percentiles(median["claim_ms"]),
        "median_round_enqueue_lag_ms": _percentiles(median["lag_ms"]),
        "p99_ms_each_round": [round(p, 2) for p in p99s],
        "goal_p99_ms": 20,
    }
    print(json.dumps(result, indent=2))


def _percentiles(sorted_ms: list[float]) -> dict[str, float]:
    return {f"p{p}": round(percentile(sorted_ms, p), 2) for p in (50, 95, 99, 100)}


if __name__ == "__main__":
    main()
