"""Overlap on PostgreSQL: a claim is committed first, then judged against its job's other
running runs in a transaction holding the job's advisory lock (`policies.overlap.when_due` decides).

Claims commit before they are judged so that a worker's turn stays one statement; the
judgement of one job is serialized across workers by the lock.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import text

from cronlink.policies.overlap import Due, for_an_instant, overlap_matters, skip_message, when_due
from cronlink.records.runs import Overlap
from cronlink.store.postgres_sql import sql
from cronlink.store.schema import to_micros

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection

    from cronlink.records.runs import Run

log = logging.getLogger("cronlink.store")

# Every worker takes its jobs' locks in one order (by key), so that two never deadlock.
JOB_LOCKS = text("""
SELECT count(pg_advisory_xact_lock(k)) FROM (
    SELECT DISTINCT hashtext(j) AS k FROM unnest(CAST(:jobs AS text[])) AS j ORDER BY k) AS keys
""")
# A claim is committed before its overlap is judged, so two workers may hold runs of one
# job at once: each run defers only to runs started before it (by start, then id), so that
# of two such runs exactly one gives way, as if their claims had been serial.
RUNNING_OF_JOB = text("""
SELECT id FROM runs
WHERE job = :job AND id != :id AND state IN ('queued', 'running') AND state = 'running'
  AND (started_at < :started OR (started_at = :started AND id < :id))
""")
# `replace` looks at every running run of its job: the newest instant is the one left
# running, whichever order the claims were judged in (a claim committed after another's
# judgement is seen by its own).
RUNNING_OF_JOB_ALL = text("""
SELECT id, not_before FROM runs
WHERE job = :job AND id != :id AND state IN ('queued', 'running') AND state = 'running'
""")
GIVE_BACK = text("""
UPDATE runs SET state = 'queued', attempt = attempt - 1, worker = NULL, lease_token = NULL,
    lease_expires_at = NULL, started_at = NULL
WHERE id = ANY(:ids) AND lease_token = :token AND state = 'running'
""")
SKIP_RUN = text("""
UPDATE runs SET state = 'cancelled', attempt = attempt - 1, finished_at = :now,
    started_at = NULL, worker = NULL, lease_token = NULL, lease_expires_at = NULL,
    error_type = 'Overlap', error_message = :message, error_reason = 'overlap'
WHERE id = :id
""")
SKIP_FIRE = text("UPDATE fires SET fate = 'skipped_overlap' WHERE run_id = :id")
REPLACE_RUNNING = text("UPDATE runs SET cancel_requested = true WHERE id = ANY(:ids)")


async def judged(
    db: AsyncConnection[Any], claimed: list[Run], now: datetime, token: str
) -> list[Run]:
    """Apply overlap to committed claims; if that fails, give back the runs it concerned
    (the others start), so that none waits for its lease to expire."""
    try:
        async with db.transaction():
            return await _apply_overlap(db, claimed, now)
    except psycopg.Error as error:
        judged = [run.id for run in claimed if overlap_matters(run)]
        log.warning("overlap check failed (%s); giving back runs %s", error, judged)
        with contextlib.suppress(psycopg.Error):  # else their leases expire and are reaped
            await db.execute(sql(GIVE_BACK), {"ids": judged, "token": token})
        return [run for run in claimed if not overlap_matters(run)]


async def _apply_overlap(db: AsyncConnection[Any], runs: list[Run], now: datetime) -> list[Run]:
    """Keep the claimed runs their job's overlap policy lets start."""
    claimed = sorted(runs, key=lambda r: (r.not_before, r.id))
    jobs = sorted({run.job for run in claimed if overlap_matters(run)})
    # Checks of one job by two workers see each other's outcome: one at a time.
    await db.execute(sql(JOB_LOCKS), {"jobs": jobs})
    pending = {run.id for run in claimed}
    kept: list[Run] = []
    for run in claimed:
        pending.discard(run.id)
        if not await _gives_way(db, run, pending, now):
            kept.append(run)
    return sorted(kept, key=lambda r: r.id)


async def _gives_way(db: AsyncConnection[Any], run: Run, pending: set[int], now: datetime) -> bool:
    if not overlap_matters(run):
        return False
    if run.overlap is Overlap.REPLACE and for_an_instant(run):
        await _replace(db, run, pending)
        return False
    started = None if run.started_at is None else to_micros(run.started_at)
    params = {"job": run.job, "id": run.id, "started": started}
    found = await (await db.execute(sql(RUNNING_OF_JOB), params)).fetchall()
    running = [row[0] for row in found if row[0] not in pending]
    action = when_due(run, running)
    if action is Due.WAIT:
        await db.execute(sql(GIVE_BACK), {"ids": [run.id], "token": run.lease_token})
    elif action is Due.REPLACE:
        await db.execute(sql(REPLACE_RUNNING), {"ids": running})
    elif action is Due.SKIP:
        message = skip_message(run, running)
        await db.execute(sql(SKIP_RUN), {"now": to_micros(now), "message": message, "id": run.id})
        await db.execute(sql(SKIP_FIRE), {"id": run.id})
    return action in (Due.WAIT, Due.SKIP)


async def _replace(db: AsyncConnection[Any], run: Run, pending: set[int]) -> None:
    """Ask every older running run of the job to cancel, and this one too if a newer one
    runs: of runs claimed at once, only the newest goes on."""
    found = await db.execute(sql(RUNNING_OF_JOB_ALL), {"job": run.job, "id": run.id})
    mine = (to_micros(run.not_before), run.id)
    others = [(row[1], row[0]) for row in await found.fetchall() if row[0] not in pending]
    older = [i for at, i in others if (at, i) < mine]
    cancel = older + ([run.id] if len(older) < len(others) else [])
    if cancel:
        await db.execute(sql(REPLACE_RUNNING), {"ids": cancel})
