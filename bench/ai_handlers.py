"""The heavy job `ai_bench.py` runs: many calls to a chat model at once, through `ctx.ai`."""

from __future__ import annotations

import asyncio
from typing import Any

from cronlink import App, RunContext

app = App()
MEMORY_LIMIT = 512 * 2**20
"""Held by one heavy run of 500 calls at once, with room to spare."""
LABELS = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


@app.job(name="ask-many", tier="heavy", timeout="30m", max_attempts=1, memory_limit=MEMORY_LIMIT)
async def ask_many(ctx: RunContext) -> dict[str, Any]:
    """`payload["calls"]` classifications at once; how many were answered."""
    calls = int(ctx.payload["calls"])

    async def one(n: int) -> str:
        answer = await ctx.ai.complete(
            model="bench", schema=LABELS, max_tokens=20,
            messages=[{"role": "user", "content": f"URGENT: ticket {n} is waiting on you"}],
            idempotency_key=f"{ctx.idempotency_key}:{n}",
        )  # fmt: skip
        return str(answer.data["label"])

    answered = await asyncio.gather(*(one(n) for n in range(calls)))
    return {"answered": len(answered)}
