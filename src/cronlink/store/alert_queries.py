"""What the alert rules look at (`store.alerts.facts`): recent runs per job, unhealthy
connections, stalled triggers. Read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select

from cronlink.records.alerts import (
    ConnectionFacts,
    Facts,
    JobFacts,
    RecentRun,
    TriggerFacts,
)
from cronlink.records.runs import RunState
from cronlink.store.schema import automations, connections, fires, jobs, runs

if TYPE_CHECKING:
    from sqlalchemy import Connection

ENDED = [s.value for s in RunState if s.finished and s is not RunState.CANCELLED]
LIMIT = 1000
"""Unhealthy connections and stalled triggers read per evaluation, at most."""


def facts(c: Connection, names: list[str], recent: int) -> Facts:
    """What the rules look at: `recent` finished runs of each job of `names`, and more."""
    return Facts(
        jobs={name: job_facts(c, name, recent) for name in names},
        paused=frozenset(c.execute(select(jobs.c.name).where(jobs.c.paused.is_(True))).scalars()),
        connections=unhealthy_connections(c),
        triggers=stalled_triggers(c),
    )


def job_facts(c: Connection, name: str, recent: int) -> JobFacts:
    """Each read walks the job's runs newest first along `ix_runs_job` (job, id)."""
    rows = c.execute(
        select(runs.c.id, runs.c.state, runs.c.finished_at, runs.c.duration_ms,
               runs.c.attempt, runs.c.error_type, runs.c.error_reason)
        .where(runs.c.job == name, runs.c.state.in_(ENDED))
        .order_by(runs.c.id.desc())
        .limit(recent)
    ).all()  # fmt: skip
    last_success = c.execute(
        select(runs.c.finished_at)
        .where(runs.c.job == name, runs.c.state == RunState.SUCCEEDED.value)
        .order_by(runs.c.id.desc())
        .limit(1)
    ).scalar()
    first_fire = c.execute(select(func.min(fires.c.scheduled_for)).where(fires.c.job == name))
    return JobFacts(
        job=name,
        recent=tuple(RecentRun(**r._asdict()) for r in rows),
        last_success=last_success,
        first_fire=first_fire.scalar(),
    )


def unhealthy_connections(c: Connection) -> tuple[ConnectionFacts, ...]:
    rows = c.execute(
        select(connections.c.id, connections.c.provider, connections.c.owner,
               connections.c.state, connections.c.health, connections.c.health_failures,
               connections.c.checked_at, connections.c.updated_at)
        .where(or_(connections.c.state == "needs_reauth",
                   (connections.c.state == "active") & (connections.c.health == "down")))
        .order_by(connections.c.id)
        .limit(LIMIT)
    ).all()  # fmt: skip
    return tuple(ConnectionFacts(**r._asdict()) for r in rows)


def stalled_triggers(c: Connection) -> tuple[TriggerFacts, ...]:
    rows = c.execute(
        select(automations.c.name, automations.c.trigger, automations.c.advanced_at,
               automations.c.last_success_at, automations.c.poll_failures)
        .where(automations.c.state == "active", automations.c.stalled.is_(True))
        .order_by(automations.c.id)
        .limit(LIMIT)
    ).all()  # fmt: skip
    return tuple(TriggerFacts(**r._asdict()) for r in rows)
