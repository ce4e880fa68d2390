"""Handlers the starter `cronlink.toml` points at, so a fresh install has work to watch."""

from __future__ import annotations

import platform
from datetime import UTC, datetime

from cronlink.context import RunContext


async def heartbeat(ctx: RunContext) -> dict[str, str]:
    """Log that cronlink is alive; the result shows on the run."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    ctx.log.info("heartbeat at %s on %s (attempt %d)", now, platform.node(), ctx.attempt)
    return {"at": now, "scheduled_for": str(ctx.scheduled_for)}


def crunch(ctx: RunContext) -> int:
    """A CPU-bound job for the heavy tier: sums squares in a child process."""
    limit = int(ctx.payload or 2_000_000)
    return sum(i * i for i in range(limit))
