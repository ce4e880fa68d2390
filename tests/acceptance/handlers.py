"""Job handlers used by the acceptance tests (importable by heavy-tier child processes)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp

from cronlink import App, RunContext

app = App()


@app.job(name="ok")
async def ok(ctx: RunContext) -> dict[str, Any]:
    ctx.log.info("payload is %s", ctx.payload)
    return {"payload": ctx.payload, "attempt": ctx.attempt, "key": ctx.idempotency_key}


@app.job(name="boom", max_attempts=3, min_backoff=0.01, max_backoff=0.02)
async def boom(ctx: RunContext) -> None:
    raise ValueError(f"boom on attempt {ctx.attempt}")


@app.job(name="picky", max_attempts=3, retry_on=[TimeoutError])
async def picky(ctx: RunContext) -> None:
    raise KeyError("not retried")


@app.job(name="slow", timeout="300ms", max_attempts=1)
async def slow(ctx: RunContext) -> None:
    await asyncio.sleep(30)


@app.job(name="sleepy", max_attempts=2)
async def sleepy(ctx: RunContext) -> str:
    await asyncio.sleep(float(ctx.payload or 30))
    return "woke"


@app.job(name="blocking")
def blocking(ctx: RunContext) -> str:
    time.sleep(0.2)
    return "done"


@app.job(name="heavy-ok", tier="heavy")
def heavy_ok(ctx: RunContext) -> dict[str, int]:
    ctx.log.info("in child")
    return {"pid": os.getpid(), "parent": os.getppid()}


@app.job(name="heavy-async", tier="heavy")
async def heavy_async(ctx: RunContext) -> int:
    await asyncio.sleep(0.01)
    return int(ctx.payload) * 2


@app.job(name="heavy-boom", tier="heavy", max_attempts=1)
def heavy_boom(ctx: RunContext) -> None:
    raise RuntimeError("child failed")


@app.job(name="hog", tier="heavy", memory_limit=150 * 2**20, max_attempts=3)
def hog(ctx: RunContext) -> None:
    chunks = []
    for _ in range(100):
        chunks.append(bytearray(20 * 2**20))
        time.sleep(0.02)


@app.job(name="spin", tier="heavy", timeout="60s", max_attempts=1)
def spin(ctx: RunContext) -> int:
    # CPU time, not wall time: the figures tests read from it hold on a busy machine too.
    deadline = time.process_time() + float(ctx.payload or 3)
    n = 0
    while time.process_time() < deadline:
        n += 1
    return n


@app.job(name="heavy-slow", tier="heavy", timeout="500ms", max_attempts=1)
def heavy_slow(ctx: RunContext) -> None:
    time.sleep(60)


@app.job(name="hand-over")
async def hand_over(ctx: RunContext) -> int:
    return await ctx.enqueue("heavy-async", 21)


@app.job(name="heavy-hand-over", tier="heavy")
async def heavy_hand_over(ctx: RunContext) -> int:
    return await ctx.enqueue("ok", "from child")


@app.job(name="stalls-first", max_attempts=3)
async def stalls_first(ctx: RunContext) -> int:
    if ctx.attempt == 1:
        ctx.log.info("attempt 1 stalls")
        await asyncio.sleep(60)
    return ctx.attempt


@app.job(name="slow-first", max_attempts=3)
async def slow_first(ctx: RunContext) -> int:
    await asyncio.sleep(3 if ctx.attempt == 1 else 0.1)
    return ctx.attempt


@app.job(name="heavy-credentials", tier="heavy", max_attempts=1)
async def heavy_credentials(ctx: RunContext) -> str:
    """In a child process: ask the worker for credentials, call the provider with them."""
    connection_id = ctx.payload["connection_id"]
    creds = await ctx.connections.credentials(connection_id)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{ctx.payload['url']}/api/me", headers={"Authorization": creds.authorization}
        ) as response,
    ):
        user = (await response.json())["user"]
    await ctx.connections.used(connection_id)
    return str(user)


SENTIMENT = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


@app.job(name="ask-model", max_attempts=1)
async def ask_model(ctx: RunContext) -> Any:
    answer = await ctx.ai.complete(
        model="fast", messages=[{"role": "user", "content": str(ctx.payload)}], schema=SENTIMENT
    )
    return {"label": answer.data["label"], "tokens": answer.usage.input_tokens}


@app.job(name="heavy-ask-model", tier="heavy", max_attempts=1)
async def heavy_ask_model(ctx: RunContext) -> Any:
    return await ask_model(ctx)


@app.job(name="leak-model-key", max_attempts=1)
async def leak_model_key(ctx: RunContext) -> str:
    key = os.environ["SANDBOX_MODEL_KEY"]
    ctx.log.info("the key is %s", key)
    raise RuntimeError(f"failed with key {key}")
