"""What `/metrics` reads from the database at each scrape: queues per tier, connections by
state and health, chat models' calls. Each is one grouped query over a partial index or a
small table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from cronlink.records.runs import QueueState, RunState, Snapshot, Tier
from cronlink.store.ai_store import totals
from cronlink.store.schema import connections, runs

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection


def snapshot(c: Connection, now: datetime) -> Snapshot:
    """Queues per tier and connections by health, as `/metrics` reports them."""
    due = {
        Tier(tier): (count, oldest)
        for tier, count, oldest in c.execute(
            select(runs.c.tier, func.count(), func.min(runs.c.not_before))
            .where(runs.c.state == RunState.QUEUED.value, runs.c.not_before <= now)
            .group_by(runs.c.tier)
        )
    }
    running = {
        Tier(tier): count
        for tier, count in c.execute(
            select(runs.c.tier, func.count())
            .where(runs.c.state == RunState.RUNNING.value)
            .group_by(runs.c.tier)
        )
    }
    queues = {
        tier: QueueState(
            due=due[tier][0] if tier in due else 0,
            oldest_age=(now - due[tier][1]).total_seconds() if tier in due else 0.0,
            running=running.get(tier, 0),
        )
        for tier in Tier
    }
    health = c.execute(
        select(connections.c.state, connections.c.health, func.count()).group_by(
            connections.c.state, connections.c.health
        )
    )
    return Snapshot(
        queues=queues, connections={(s, h): n for s, h, n in health}, models=tuple(totals(c))
    )
