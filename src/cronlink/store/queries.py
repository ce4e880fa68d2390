"""SQL statements shared by the engines, as functions of a connection inside a transaction.

Engine-specific claiming and insert-or-ignore live with each engine; these are the parts
both can run as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.errors import RunNotFoundError
from cronlink.records.runs import RunState, Tier, Usage
from cronlink.store import run_insert
from cronlink.store.rows import fire_from_row, run_from_row, schedule_from_row
from cronlink.store.schema import DEDUPE_KEYED, fires, jobs, runs, schedules
from cronlink.store.schema import run_logs as logs

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy import Connection

    from cronlink.records.runs import Fire, NewRun, Run, Schedule, Tier
    from cronlink.store.base import RunFilter

CHUNK = 400
"""Keys per `IN (…)`: well under every engine's bound-parameter limit."""


def chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- schedules -----------------------------------------------------------------------


def sync_schedules(c: Connection, wanted: list[Schedule]) -> None:
    existing = set(c.execute(select(schedules.c.key)).scalars())
    keep = {s.key for s in wanted}
    gone = list(existing - keep)
    for part in chunks(gone):
        c.execute(delete(schedules).where(schedules.c.key.in_(part)))
    new = [s for s in wanted if s.key not in existing]
    if new:
        c.execute(
            insert(schedules),
            [
                {
                    "key": s.key,
                    "job": s.job,
                    "cron": s.cron,
                    "timezone": s.timezone,
                    "cursor": s.cursor,
                    "next_at": s.next_at,
                }
                for s in new
            ],
        )


def due_schedules(c: Connection, now: datetime, limit: int) -> list[Schedule]:
    """Schedules whose next instant is at or before `now`, earliest first."""
    rows = c.execute(
        select(schedules)
        .where(schedules.c.next_at <= now)
        .order_by(schedules.c.next_at)
        .limit(limit)
    )
    return [schedule_from_row(row) for row in rows]


def next_due(c: Connection, tier: Tier) -> datetime | None:
    """The earliest `not_before` of the queued runs of `tier`."""
    return c.execute(
        select(func.min(runs.c.not_before)).where(
            runs.c.tier == tier.value, runs.c.state == RunState.QUEUED.value
        )
    ).scalar()


def next_wakeup(c: Connection) -> datetime | None:
    """The earliest `next_at` of any schedule."""
    return c.execute(select(func.min(schedules.c.next_at))).scalar()


def ledger(c: Connection, job: str | None, since: datetime | None, limit: int) -> list[Fire]:
    """The fate of scheduled instants, newest first."""
    query = select(fires).order_by(fires.c.scheduled_for.desc()).limit(limit)
    if job is not None:
        query = query.where(fires.c.job == job)
    if since is not None:
        query = query.where(fires.c.scheduled_for >= since)
    return [fire_from_row(row) for row in c.execute(query)]


# -- jobs ----------------------------------------------------------------------------


def set_paused(c: Connection, job: str, paused: bool, now: datetime) -> None:
    """Pause or resume a job's schedules."""
    changed = c.execute(
        update(jobs).where(jobs.c.name == job).values(paused=paused, updated_at=now)
    ).rowcount
    if not changed:
        c.execute(insert(jobs).values(name=job, paused=paused, updated_at=now))


def paused_jobs(c: Connection) -> set[str]:
    """Names of paused jobs."""
    return set(c.execute(select(jobs.c.name).where(jobs.c.paused.is_(True))).scalars())


_INSERT_RUN = insert(runs).returning(runs.c.id)  # built once: enqueue is a hot verb
_KEYED = text(DEDUPE_KEYED)


def enqueue(c: Connection, run: NewRun, now: datetime) -> int:
    if run.dedupe_key is not None:
        existing = c.execute(select(runs.c.id).where(runs.c.dedupe_key == run.dedupe_key)).scalar()
        if existing is not None:
            return int(existing)
    return int(c.execute(_INSERT_RUN, run_insert.values(run, now)).scalar_one())


def enqueue_once(c: Connection, run: NewRun, now: datetime) -> tuple[int, bool]:
    """Queue a run, or find the one its dedupe key already started: (id, whether it is
    new). Callers with one key at once meet at the unique index (INSERT ... ON CONFLICT
    DO NOTHING on both engines), never at a unique violation."""
    if run.dedupe_key is None:
        return enqueue(c, run, now), True
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(runs)
        .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_KEYED)
        .returning(runs.c.id)
    )  # fmt: skip
    inserted = c.execute(statement, run_insert.values(run, now)).scalar()
    if inserted is not None:
        return int(inserted), True
    found = c.execute(select(runs.c.id).where(runs.c.dedupe_key == run.dedupe_key)).scalar_one()
    return int(found), False


def reap_expired(c: Connection, now: datetime) -> list[Run]:
    """Queue again (or declare dead) running runs whose lease has expired."""
    rows = c.execute(
        select(runs).where(runs.c.state == RunState.RUNNING.value, runs.c.lease_expires_at < now)
    ).all()
    reaped: list[Run] = []
    for row in rows:
        run = run_from_row(row)
        lost: dict[str, Any] = {
            "error_type": "LeaseExpired",
            "error_message": f"worker {run.worker} stopped heartbeating during attempt "
            f"{run.attempt}",
            "error_traceback": None,
            "error_reason": "lease_expired",
            "lease_token": None,
            "lease_expires_at": None,
        }
        if run.attempt < run.max_attempts:
            lost.update(state=RunState.QUEUED.value, not_before=now)
        else:
            lost.update(state=RunState.DEAD.value, finished_at=now)
        c.execute(
            update(runs)
            .where(runs.c.id == run.id, runs.c.lease_token == run.lease_token)
            .values(lost)
        )
        reaped.append(get_run(c, run.id))
    return reaped


def request_cancel(c: Connection, run_id: int, now: datetime) -> Run:
    """Cancel a queued run at once, or ask a running one's worker to stop it."""
    run = get_run(c, run_id)
    if run.state is RunState.QUEUED:
        c.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(state=RunState.CANCELLED.value, finished_at=now)
        )
    elif run.state is RunState.RUNNING:
        c.execute(update(runs).where(runs.c.id == run_id).values(cancel_requested=True))
    return get_run(c, run_id)


def get_run(c: Connection, run_id: int) -> Run:
    """One run; `RunNotFoundError` if there is none."""
    row = c.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFoundError(f"no run has id {run_id}")
    return run_from_row(row)


def list_runs(c: Connection, query: RunFilter) -> list[Run]:
    """Runs, newest first."""
    statement = select(runs).order_by(runs.c.id.desc()).limit(query.limit)
    if query.job is not None:
        statement = statement.where(runs.c.job == query.job)
    if query.state is not None:
        statement = statement.where(runs.c.state == query.state.value)
    if query.since is not None:
        statement = statement.where(
            or_(
                runs.c.enqueued_at >= query.since,
                and_(runs.c.scheduled_for.is_not(None), runs.c.scheduled_for >= query.since),
            )
        )
    if query.before_id is not None:
        statement = statement.where(runs.c.id < query.before_id)
    return [run_from_row(row) for row in c.execute(statement)]


def last_runs(c: Connection, names: list[str]) -> dict[str, Run]:
    """The newest run of each job that has one."""
    # One index probe per job: a GROUP BY over `ix_runs_job` would read every run's entry.
    newest = [c.execute(select(func.max(runs.c.id)).where(runs.c.job == name)).scalar()
              for name in names]  # fmt: skip
    found: dict[str, Run] = {}
    for part in chunks([i for i in newest if i is not None]):
        for row in c.execute(select(runs).where(runs.c.id.in_(part))):
            run = run_from_row(row)
            found[run.job] = run
    return found


def run_logs(c: Connection, run_id: int) -> list[tuple[datetime, int, str, str]]:
    """(at, attempt, level, message) lines of a run, oldest first."""
    rows = c.execute(
        select(logs.c.at, logs.c.attempt, logs.c.level, logs.c.message)
        .where(logs.c.run_id == run_id)
        .order_by(logs.c.id)
    )
    return [(row.at, row.attempt, row.level, row.message) for row in rows]


def notify(c: Connection, tier: Tier) -> None:
    """Wake the tier's workers on PostgreSQL when this transaction commits (SQLite's
    workers in other processes poll)."""
    if c.dialect.name == "postgresql":
        c.execute(text("SELECT pg_notify(:channel, '')"), {"channel": f"cronlink_{tier.value}"})


def usage(c: Connection, since: datetime) -> list[Usage]:
    """Runs enqueued since `since`, per job and tier: how many ended how, and their time."""
    rows = c.execute(
        select(
            runs.c.job,
            runs.c.tier,
            runs.c.state,
            func.count(),
            func.coalesce(func.sum(runs.c.duration_ms), 0),
        )
        .where(runs.c.enqueued_at >= since)
        .group_by(runs.c.job, runs.c.tier, runs.c.state)
    )
    found: dict[tuple[str, str], Usage] = {}
    for job, tier, state, count, duration_ms in rows:
        entry = found.setdefault((job, tier), Usage(job=job, tier=Tier(tier)))
        entry.runs += count
        entry.by_state[RunState(state).value] = count
        entry.run_seconds += int(duration_ms) / 1000  # PostgreSQL sums to a Decimal
    return sorted(found.values(), key=lambda u: (u.job, u.tier.value))
