"""Handlers the starter `cronlink.toml` points at, a step of the demo's daily report and
its nightly sync's transform, so a fresh install has work to watch."""

from __future__ import annotations

import json
import platform
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cronlink.clock import iso_seconds
from cronlink.context import RunContext

if TYPE_CHECKING:
    from cronlink.automations.steps import StepContext


async def heartbeat(ctx: RunContext) -> dict[str, str | None]:
    """Log that cronlink is alive; the result shows on the run."""
    now = iso_seconds(datetime.now(UTC))
    ctx.log.info("heartbeat at %s on %s (attempt %d)", now, platform.node(), ctx.attempt)
    scheduled = ctx.scheduled_for
    return {"at": now, "scheduled_for": iso_seconds(scheduled) if scheduled else None}


def crunch(ctx: RunContext) -> int:
    """A CPU-bound job for the heavy tier: sums squares in a child process."""
    limit = int(ctx.payload or 2_000_000)
    return sum(i * i for i in range(limit))


async def inbox_digest(event: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """An automation step: today's classified emails, read from the webhook they were
    posted to (`params.sink` answers the list of what it was sent), as a list for a
    report's template and as a text for a chat model to summarise.

    The emails are those whose `received` (an ISO instant) falls on the run's day (UTC):
    a daily report covers its own day, whatever the webhook kept from before."""
    answer = await ctx.request("GET", str(ctx.params["sink"]), connection=False)
    today = ctx.run.clock.now().astimezone(UTC).date().isoformat()
    emails = [e for e in json.loads(answer.body) if str(e.get("received", ""))[:10] == today]
    counts = Counter(str(e["label"]) for e in emails)
    tally = ", ".join(f"{n} {label}" for label, n in counts.most_common())
    lines = [f"Subject: Inbox on {today}", ""]
    if emails:
        lines.append(f"{len(emails)} emails today: {tally}.")
        lines += [f"- [{e['label']}] {e['subject']}: {e['summary']}" for e in emails]
    else:
        lines.append("No email was classified today.")
    ctx.log.info("event %d: %d emails today (%s)", ctx.event_id, len(emails), tally or "none")
    return {"day": today, "emails": emails, "counts": dict(counts), "text": "\n".join(lines)}


def as_contact(record: dict[str, Any]) -> dict[str, Any]:
    """A mail provider's record as a CRM contact, upserted by its external id (the demo's
    nightly sync)."""
    number = record["id"]
    return {"external_id": f"rec-{number}", "name": record["name"],
            "email": f"customer{number}@example.com"}  # fmt: skip
