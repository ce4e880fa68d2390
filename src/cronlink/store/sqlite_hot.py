"""The SQLite hot path: firing, claim, complete and heartbeat as prepared SQL.

These run for every run, thousands of times a second; building SQLAlchemy statements per
call cost more than SQLite itself (measured by bench/queue_bench.py and
bench/scheduler_bench.py), so the hot verbs are plain SQL text that sqlite3 caches as
prepared statements. They read and write the same schema (`store/schema.py`) as the rest.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from cronlink.policies.overlap import Due, overlap_matters, skip_message, when_due
from cronlink.records.runs import Fate, RunState
from cronlink.store.fates import fire_fate
from cronlink.store.rows import run_from_mapping
from cronlink.store.run_insert import insert_sql, raw_row, raw_values, sqlite_param
from cronlink.store.schema import ON_DEDUPE_KEY, Instant, from_micros, runs, to_micros

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from cronlink.records.audit import AuditEntry
    from cronlink.records.runs import NewRun, Run, Tier
    from cronlink.store.base import Outcome, ScheduleAdvance, Tick

CHUNK = 400
"""Keys per `IN (…)`: well under SQLite's bound-parameter limit."""

_COLUMNS = [c.name for c in runs.columns]
_INSTANTS = {c.name for c in runs.columns if isinstance(c.type, Instant)}
_SELECT = ", ".join(_COLUMNS)

CLAIM = f"""
UPDATE runs SET state = 'running', attempt = attempt + 1, worker = ?, lease_token = ?,
    lease_expires_at = ?, started_at = ?
WHERE id IN (
    -- `state IN (…)` repeats the partial index's condition so SQLite can use it.
    SELECT id FROM runs AS r
    WHERE r.tier = ? AND r.state = 'queued' AND r.not_before <= ?
      AND (r.overlap != 'queue' OR NOT EXISTS (
          SELECT 1 FROM runs AS o WHERE o.job = r.job
          AND o.state IN ('queued', 'running') AND o.state = 'running'))
    ORDER BY r.not_before, r.id
    LIMIT ?)
RETURNING {_SELECT}
"""
UNCLAIM = """
UPDATE runs SET state = 'queued', attempt = attempt - 1, worker = NULL, lease_token = NULL,
    lease_expires_at = NULL, started_at = NULL
WHERE id = ?
"""
RUNNING_OF_JOB = """
SELECT id FROM runs
WHERE job = ? AND id != ? AND state IN ('queued', 'running') AND state = 'running'
"""
SKIP_RUN = """
UPDATE runs SET state = 'cancelled', attempt = attempt - 1, finished_at = ?, started_at = NULL,
    worker = NULL, lease_token = NULL, lease_expires_at = NULL, error_type = 'Overlap',
    error_message = ?, error_reason = 'overlap'
WHERE id = ?
"""
SKIP_FIRE = "UPDATE fires SET fate = 'skipped_overlap' WHERE run_id = ?"
REPLACE_RUNNING = "UPDATE runs SET cancel_requested = 1 WHERE id = ?"
_ENDED = """
UPDATE runs SET state = ?, finished_at = ?, not_before = COALESCE(?, not_before),
    error_type = ?, error_message = ?, error_traceback = ?, error_reason = ?, result = ?,
    duration_ms = ?, peak_memory = ?, lease_token = NULL, lease_expires_at = NULL{}
WHERE id = ? AND lease_token = ? AND state = 'running'
"""
COMPLETE = _ENDED.format("")
# An attempt that spent something adds it to the run's totals; most light attempts spent
# nothing, and leave the three columns alone (a few % of bench/queue_bench.py).
COMPLETE_SPENT = _ENDED.format(""",
    requests = requests + ?, cpu_ms = COALESCE(cpu_ms + ?, ?, cpu_ms),
    memory_mib_s = COALESCE(memory_mib_s + ?, ?, memory_mib_s)""")
LOG = """
INSERT INTO run_logs (run_id, attempt, at, level, message)
VALUES (?, (SELECT attempt FROM runs WHERE id = ?), ?, ?, ?)
"""
EXTEND = """
UPDATE runs SET lease_expires_at = ? WHERE id = ? AND worker = ? AND state = 'running'
"""
HELD = """
SELECT cancel_requested FROM runs WHERE id = ? AND worker = ? AND state = 'running'
"""


def claim(
    db: sqlite3.Connection, worker: str, token: str, tier: Tier, limit: int,
    expires: datetime, now: datetime,
) -> list[Run]:  # fmt: skip
    """Take due runs, then apply each one's overlap policy now that it is due."""
    rows = db.execute(
        CLAIM,
        (worker, token, to_micros(expires), to_micros(now), tier.value, to_micros(now), limit),
    ).fetchall()
    claimed = sorted((_run(row) for row in rows), key=lambda r: (r.not_before, r.id))
    pending = {run.id for run in claimed}
    kept: list[Run] = []
    for run in claimed:
        pending.discard(run.id)
        if _gives_way(db, run, pending, now):
            continue
        kept.append(run)
    return sorted(kept, key=lambda r: r.id)


def _gives_way(db: sqlite3.Connection, run: Run, pending: set[int], now: datetime) -> bool:
    """Apply `run`'s overlap policy against the job's running runs; True if it must not start.

    Runs claimed in this batch but not yet looked at (`pending`) do not count as running.
    """
    if not overlap_matters(run):
        return False
    running = [
        row[0] for row in db.execute(RUNNING_OF_JOB, (run.job, run.id)) if row[0] not in pending
    ]
    action = when_due(run, running)
    if action is Due.WAIT:
        db.execute(UNCLAIM, (run.id,))
    elif action is Due.REPLACE:
        db.executemany(REPLACE_RUNNING, [(other,) for other in running])
    elif action is Due.SKIP:
        db.execute(SKIP_RUN, (to_micros(now), skip_message(run, running), run.id))
        db.execute(SKIP_FIRE, (run.id,))
    return action in (Due.WAIT, Due.SKIP)


def complete(
    db: sqlite3.Connection, run_id: int, token: str, outcome: Outcome, now: datetime
) -> bool:
    retrying = outcome.retry_at is not None
    error = outcome.error
    ended: tuple[Any, ...] = (
        RunState.QUEUED.value if retrying else outcome.state.value,
        None if retrying else to_micros(now),
        to_micros(outcome.retry_at) if outcome.retry_at is not None else None,
        error.type if error else None,
        error.message if error else None,
        error.traceback if error else None,
        error.reason if error else None,
        outcome.result,
        outcome.duration_ms,
        outcome.peak_memory,
    )
    spent = outcome.spend
    if spent.requests or spent.cpu_ms is not None or spent.memory_mib_s is not None:
        statement = COMPLETE_SPENT
        ended += (spent.requests, spent.cpu_ms, spent.cpu_ms, spent.memory_mib_s,
                  spent.memory_mib_s)  # fmt: skip
    else:
        statement = COMPLETE
    changed = db.execute(statement, (*ended, run_id, token)).rowcount
    if changed and outcome.logs:
        db.executemany(
            LOG, [(run_id, run_id, to_micros(at), level, text) for at, level, text in outcome.logs]
        )
    return bool(changed)


def extend_leases(
    db: sqlite3.Connection, worker: str, run_ids: list[int], expires: datetime
) -> set[int]:
    """Renew leases; returns ids to stop: cancel requested, or no longer held by `worker`."""
    stop: set[int] = set()
    db.executemany(EXTEND, [(to_micros(expires), run_id, worker) for run_id in run_ids])
    for run_id in run_ids:
        row = db.execute(HELD, (run_id, worker)).fetchone()
        if row is None or row[0]:
            stop.add(run_id)
    return stop


def _run(row: tuple[Any, ...]) -> Run:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _INSTANTS:
        if values[name] is not None:
            values[name] = from_micros(values[name])
    return run_from_mapping(values)


INSERT_FIRE = """
INSERT OR IGNORE INTO fires (job, scheduled_for, fate, run_id, recorded_at)
VALUES (?, ?, ?, NULL, ?)
"""
INSERT_RUN = insert_sql(sqlite_param)
LINK_FIRE = "UPDATE fires SET run_id = ? WHERE rowid = ?"
PAUSED = "SELECT name FROM jobs WHERE paused = 1 AND name IN ({})"
ADVANCE = "UPDATE schedules SET cursor = ?, next_at = ? WHERE key = ? AND cursor < ?"


def record_ticks(
    db: sqlite3.Connection, ticks: list[Tick], advances: list[ScheduleAdvance], now: datetime
) -> dict[tuple[str, datetime], int]:
    """Insert-or-ignore each tick into the ledger; start the runs of the fresh ones.

    Runs inside the caller's write transaction, so the paused jobs read here stay paused
    until it commits.
    """
    paused = _among(db, PAUSED, sorted({t.run.job for t in ticks}))
    stamp = to_micros(now)
    started: dict[tuple[str, datetime], int] = {}
    for tick in ticks:
        at = tick.run.scheduled_for
        assert at is not None
        fate = fire_fate(tick, paused)
        cursor = db.execute(INSERT_FIRE, (tick.run.job, to_micros(at), fate.value, stamp))
        if not cursor.rowcount or fate is not Fate.RUN:
            continue  # recorded before (by this or another scheduler), or not a run
        run_id = db.execute(INSERT_RUN, raw_row(raw_values(tick.run, stamp))).lastrowid
        assert run_id is not None
        db.execute(LINK_FIRE, (run_id, cursor.lastrowid))
        started[(tick.run.job, at)] = run_id
    db.executemany(
        ADVANCE,
        [
            (to_micros(a.cursor), None if a.next_at is None else to_micros(a.next_at), a.key,
             to_micros(a.cursor))
            for a in advances
        ],
    )  # fmt: skip
    return started


def _among(db: sqlite3.Connection, query: str, names: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(names), CHUNK):
        part = names[start : start + CHUNK]
        found.update(row[0] for row in db.execute(query.format(",".join("?" * len(part))), part))
    return found


INSERT_ONCE = insert_sql(sqlite_param, suffix=f"{ON_DEDUPE_KEY} RETURNING id")
RUN_OF_KEY = "SELECT id FROM runs WHERE dedupe_key = ?"
INSERT_AUDIT = """
INSERT INTO audit_log (at, actor, action, target, client, outcome, detail)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def enqueue_audited(
    db: sqlite3.Connection,
    run: NewRun,
    now: datetime,
    audit: Callable[[int, bool], AuditEntry],
    detail_chars: int,
) -> tuple[int, bool]:
    """`AuditStore.enqueue` in plain SQL: an API call's run (or the one its dedupe key
    started) and its audit line, inside the caller's write transaction."""
    row = db.execute(INSERT_ONCE, raw_row(raw_values(run, to_micros(now)))).fetchone()
    deduplicated = row is None
    if row is None:
        row = db.execute(RUN_OF_KEY, (run.dedupe_key,)).fetchone()
    run_id = int(row[0])
    entry = audit(run_id, deduplicated)
    db.execute(
        INSERT_AUDIT,
        (to_micros(entry.at), entry.actor, entry.action, entry.target, entry.client,
         entry.outcome, entry.detail[:detail_chars]),
    )  # fmt: skip
    return run_id, deduplicated
