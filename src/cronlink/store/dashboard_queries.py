"""What the dashboard reads, as indexed queries that stay fast with millions of runs.

Every query here is bounded by an index: the runs of a window by `ix_runs_enqueued`
(which covers job, state and duration, so the window is read from the index alone), dead
runs by `ix_runs_dead`, a job's recent runs by `ix_runs_job`, unhealthy connections by
`ix_connections_unhealthy`. Conditions a partial index depends on are written as literals:
a planner cannot prove that a bound parameter matches an index's condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, func, select, text, type_coerce

from cronlink.records.runs import RunState
from cronlink.store.automation_queries import automation_from

# The connection domain's own row mapping, so the dashboard can never select the secrets.
from cronlink.store.connection_queries import PUBLIC_COLUMNS, connection_from
from cronlink.store.percentiles import percentiles
from cronlink.store.rows import run_from_row
from cronlink.store.schema import (
    automation_events,
    automations,
    connections,
    enqueued_since,
    runs,
    to_micros,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection as Db

    from cronlink.records.automations import Automation
    from cronlink.records.connections import Connection
    from cronlink.records.runs import Run
    from cronlink.store.base import Store

HOUR_MICROS = 3_600_000_000
FAILED = frozenset({RunState.FAILED.value, RunState.TIMED_OUT.value, RunState.DEAD.value})
PERCENTILES = (50, 95)


@dataclass(kw_only=True, slots=True)
class JobWindow:
    """One job's runs enqueued within the window."""

    job: str
    runs: int = 0
    failed: int = 0
    """Ended failed, timed out or dead."""
    p50_ms: int | None = None
    p95_ms: int | None = None


@dataclass(kw_only=True, slots=True)
class HourCount:
    hour: datetime
    runs: int = 0
    failed: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    jobs: dict[str, JobWindow]
    hours: list[HourCount]
    """Every hour of the window, oldest first, empty ones included."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunPoint:
    """A run as the duration chart draws it."""

    id: int
    state: str
    enqueued_at: datetime
    duration_ms: int | None


class DashboardQueries:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def window(self, since: datetime, now: datetime) -> Window:
        """Runs enqueued since `since`, per job (counts, failures, p50/p95) and per hour."""
        return await self._store.transact(lambda c: _window(c, since, now), write=False)

    async def dead_runs(self, since: datetime, limit: int) -> list[Run]:
        """The newest dead runs enqueued since `since`."""
        query = (
            select(runs).where(text("runs.state = 'dead'"), runs.c.enqueued_at >= since)
            .order_by(runs.c.id.desc()).limit(limit)
        )  # fmt: skip
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        return [run_from_row(r) for r in rows]

    async def recent(self, job: str, limit: int) -> list[RunPoint]:
        """The job's newest runs, newest first, as the duration chart needs them."""
        query = (
            select(runs.c.id, runs.c.state, runs.c.enqueued_at, runs.c.duration_ms)
            .where(runs.c.job == job).order_by(runs.c.id.desc()).limit(limit)
        )  # fmt: skip
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        return [RunPoint(id=r.id, state=r.state, enqueued_at=r.enqueued_at,
                         duration_ms=r.duration_ms) for r in rows]  # fmt: skip

    async def unhealthy_connections(self, limit: int) -> list[Connection]:
        """Connections that need their owner (reauth) or whose provider is down."""
        query = (
            select(*PUBLIC_COLUMNS).where(text(UNHEALTHY)).order_by(connections.c.id).limit(limit)
        )
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        return [connection_from(r._mapping) for r in rows]

    async def stalled_automations(self, limit: int) -> list[Automation]:
        """Automations whose trigger's watermark stopped advancing."""
        query = (
            select(automations).where(automations.c.stalled.is_(True))
            .order_by(automations.c.id).limit(limit)
        )  # fmt: skip
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        return [automation_from(r._mapping) for r in rows]

    async def event_counts(self, automation_ids: list[int], since: datetime) -> dict[int, Counts]:
        """Events seen since `since` per automation and state."""
        if not automation_ids:
            return {}
        query = (
            select(automation_events.c.automation_id, automation_events.c.state, func.count())
            .where(automation_events.c.seen_at >= since,
                   automation_events.c.automation_id.in_(automation_ids))
            .group_by(automation_events.c.automation_id, automation_events.c.state)
        )  # fmt: skip
        rows = await self._store.transact(lambda c: c.execute(query).all(), write=False)
        found: dict[int, Counts] = {}
        for automation_id, state, count in rows:
            found.setdefault(automation_id, {})[state] = count
        return found


Counts = dict[str, int]
UNHEALTHY = "connections.state = 'needs_reauth' OR connections.health IN ('down', 'auth_failed')"
"""Also the condition of the partial index `ix_connections_unhealthy`."""


def _window(c: Db, since: datetime, now: datetime) -> Window:
    recent = enqueued_since(since, runs.c.job, runs.c.state, runs.c.enqueued_at,
                            runs.c.duration_ms)  # fmt: skip
    hour = type_coerce(recent.c.enqueued_at, BigInteger) // HOUR_MICROS
    counted = c.execute(
        select(recent.c.job, recent.c.state, hour, func.count()).group_by(
            recent.c.job, recent.c.state, hour
        )
    ).all()
    first = to_micros(since) // HOUR_MICROS
    hours = [
        HourCount(hour=datetime.fromtimestamp(h * 3600, UTC))
        for h in range(first, to_micros(now) // HOUR_MICROS + 1)
    ]
    jobs: dict[str, JobWindow] = {}
    for job, state, bucket, count in counted:
        entry = jobs.setdefault(job, JobWindow(job=job))
        entry.runs += count
        slot = hours[min(max(int(bucket) - first, 0), len(hours) - 1)]
        slot.runs += count
        if state in FAILED:
            entry.failed += count
            slot.failed += count
    for job, points in percentiles(c, since, PERCENTILES).items():
        jobs[job].p50_ms, jobs[job].p95_ms = points.get(50), points.get(95)
    return Window(jobs=jobs, hours=hours)
