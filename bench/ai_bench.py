"""Calls to chat models from the heavy tier: how many at once one heavy run holds, and a
model's requests-a-minute held across workers.

- In flight: one heavy run (a process of its own, as in `cronlink run`) makes `--calls`
  classifications at once through `ctx.ai` against the sandbox's model answering after
  `--latency-ms`; the run's time, its peak memory against its job's limit, and the tokens
  and cost cronlink recorded against those the sandbox billed.
- Paced: two heavy workers (each its own store connection, their runs each a process)
  share a model with `rpm = --rpm`; `--paced-calls` calls over four runs. The sandbox
  counts the most requests it saw in any 60 s (and refuses past `--rpm` itself, so an
  excess would show as 429s): the figure must not pass `--rpm`.

The sandbox runs in a process of its own. Run:
  .venv/bin/python bench/ai_bench.py [--calls 500] [--latency-ms 1000] [--rounds 3]
                                     [--rpm 1200] [--paced-calls 1800] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ai_handlers import MEMORY_LIMIT, app
from cronlink.ai import ChatModel, Models
from cronlink.egress import LOOPBACK
from cronlink.engine.tiers import HeavyTier
from cronlink.engine.worker import Worker
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.ai_calls import month_of
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import Store, store_for
from queue_bench import fresh_database
from refresh_bench import sandbox_process

KEY_ENV = "AI_BENCH_MODEL_KEY"
INPUT_PRICE, OUTPUT_PRICE = 0.15, 0.6


def model(sandbox: str, rpm: int | None) -> Models:
    os.environ[KEY_ENV] = "sandbox-model-key"
    declared = ChatModel(
        name="bench", base_url=f"{sandbox}/v1", model="sandbox-model", api_key=f"${{{KEY_ENV}}}",
        rpm=rpm, timeout=timedelta(seconds=120), input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
    )  # fmt: skip
    return Models({"bench": declared})


async def switches(sandbox: str, **changes: Any) -> dict[str, Any]:
    async with new_session(LOOPBACK) as session:
        if changes:
            async with session.post(f"{sandbox}/sandbox/switches", json=changes) as r:
                assert r.status == 200, await r.text()
        async with session.get(f"{sandbox}/sandbox/stats") as r:
            stats: dict[str, Any] = await r.json()
            return stats


async def run_all(stores: list[Store], models: Models, batches: list[int]) -> list[Any]:
    """The runs of `ask-many`, one per batch, on a heavy worker per store; until done."""
    ask = app.get("ask-many")
    ids = [
        await stores[0].enqueue(new_run(ask, Reason.API, payload={"calls": n}), datetime.now(UTC))
        for n in batches
    ]
    stop = asyncio.Event()
    session = new_session(LOOPBACK)
    workers = [
        Worker(store, app.jobs, Tier.HEAVY, HeavyTier(session, preload=("ai_handlers",)),
               ai=models, poll=0.05, concurrency=len(batches))
        for store in stores
    ]  # fmt: skip
    running = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        while True:
            runs = [await stores[0].get_run(i) for i in ids]
            if all(r.state.finished for r in runs):
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*running)
        await session.close()
    failed = [r for r in runs if r.state is not RunState.SUCCEEDED]
    assert not failed, failed[0].error
    return runs


async def in_flight(url: str, sandbox: str, calls: int, latency_ms: int) -> dict[str, Any]:
    await switches(sandbox, model_latency_ms=latency_ms)
    store = store_for(url)
    await store.open()
    try:
        [run] = await run_all([store], model(sandbox, None), [calls])
        stats = (await switches(sandbox))["model"]
        [month] = await store.ai.month(month_of(datetime.now(UTC)))
    finally:
        await store.close()
    assert stats["ok"] == calls == month.calls, (stats, month)
    assert (month.input_tokens, month.output_tokens) == (
        stats["prompt_tokens"], stats["completion_tokens"],
    )  # fmt: skip
    billed = (stats["prompt_tokens"] * INPUT_PRICE
              + stats["completion_tokens"] * OUTPUT_PRICE) / 1e6  # fmt: skip
    assert abs(month.cost_usd - billed) < 1e-9, (month.cost_usd, billed)
    return {
        "seconds": run.duration_ms / 1000, "peak_memory_mib": run.peak_memory / 2**20,
        "tokens": month.input_tokens + month.output_tokens, "cost_usd": month.cost_usd,
    }  # fmt: skip


async def paced(url: str, sandbox: str, rpm: int, calls: int, latency_ms: int) -> dict[str, Any]:
    await switches(sandbox, model_latency_ms=latency_ms, model_rpm=rpm)
    stores = [store_for(url), store_for(url)]
    for store in stores:
        await store.open()
    try:
        started = time.monotonic()
        await run_all(stores, model(sandbox, rpm), [calls // 4] * 4)
        took = time.monotonic() - started
        stats = (await switches(sandbox))["model"]
    finally:
        for store in stores:
            await store.close()
    return {"calls": stats["requests"], "seconds": round(took, 1),
            "max_in_any_minute": stats["max_per_minute"], "refused_over_rpm": stats["over_rpm"],
            "rpm_reached": round(stats["requests"] / took * 60)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--paced-calls", type=int, default=1800)
    parser.add_argument("--postgres", help="a PostgreSQL URL; each part uses a fresh schema")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
            rounds.append(asyncio.run(in_flight(url, sandbox, args.calls, args.latency_ms)))
    with sandbox_process() as sandbox, fresh_database(args.postgres) as url:
        held = asyncio.run(paced(url, sandbox, args.rpm, args.paced_calls, args.latency_ms))
    seconds = statistics.median(r["seconds"] for r in rounds)
    print(json.dumps({
        "benchmark": "ai", "engine": "postgresql" if args.postgres else "sqlite",
        "in_flight": {
            "calls_at_once": args.calls, "model_latency_ms": args.latency_ms,
            "rounds": args.rounds, "median_run_seconds": round(seconds, 2),
            "median_calls_per_s": round(args.calls / seconds),
            "peak_memory_mib": round(max(r["peak_memory_mib"] for r in rounds), 1),
            "memory_limit_mib": MEMORY_LIMIT // 2**20,
            "tokens_and_cost_equal_the_sandbox_bill": True,
        },
        "paced": {"rpm": args.rpm, **held},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
