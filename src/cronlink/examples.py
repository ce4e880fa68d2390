"""Handlers the starter `cronlink.toml` points at, and the steps of the demo's automation,
so a fresh install has work to watch."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cronlink.context import RunContext

if TYPE_CHECKING:
    from cronlink.automations.steps import StepContext


async def heartbeat(ctx: RunContext) -> dict[str, str]:
    """Log that cronlink is alive; the result shows on the run."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    ctx.log.info("heartbeat at %s on %s (attempt %d)", now, platform.node(), ctx.attempt)
    return {"at": now, "scheduled_for": str(ctx.scheduled_for)}


def crunch(ctx: RunContext) -> int:
    """A CPU-bound job for the heavy tier: sums squares in a child process."""
    limit = int(ctx.payload or 2_000_000)
    return sum(i * i for i in range(limit))


def classify_email(event: dict[str, Any], ctx: StepContext) -> dict[str, str]:
    """An automation step: label a new email (a stand-in for an AI classifier)."""
    subject = str(event.get("subject", "")).lower()
    label = "urgent" if any(w in subject for w in ("urgent", "down", "asap")) else "routine"
    ctx.log.info("event %d: %r is %s", ctx.event_id, subject, label)
    return {"label": label, "subject": subject}
