"""The SQLite hot path: claim, complete and heartbeat as prepared SQL on the raw connection.

These run for every run, thousands of times a second; building SQLAlchemy statements per
call cost more than SQLite itself (measured by bench/queue_bench.py), so the hot verbs are
plain SQL text that sqlite3 caches as prepared statements. They read and write the same
schema (`store/schema.py`) as everything else.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from cronlink.records import RunState
from cronlink.store.rows import run_from_mapping
from cronlink.store.schema import Instant, from_micros, runs, to_micros

if TYPE_CHECKING:
    from datetime import datetime

    from cronlink.records import Run, Tier
    from cronlink.store.base import Outcome

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
      AND (r.serial = 0 OR NOT EXISTS (
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
COMPLETE = """
UPDATE runs SET state = ?, finished_at = ?, not_before = COALESCE(?, not_before),
    error_type = ?, error_message = ?, error_traceback = ?, error_reason = ?, result = ?,
    duration_ms = ?, peak_memory = ?, lease_token = NULL, lease_expires_at = NULL
WHERE id = ? AND lease_token = ? AND state = 'running'
"""
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
    """Take due runs; a second run of a serial job taken in the same batch is put back."""
    rows = db.execute(
        CLAIM,
        (worker, token, to_micros(expires), to_micros(now), tier.value, to_micros(now), limit),
    ).fetchall()
    claimed = sorted((_run(row) for row in rows), key=lambda r: r.id)
    kept: list[Run] = []
    serial_jobs: set[str] = set()
    for run in claimed:
        if run.serial and run.job in serial_jobs:
            db.execute(UNCLAIM, (run.id,))
            continue
        serial_jobs.add(run.job) if run.serial else None
        kept.append(run)
    return kept


def complete(
    db: sqlite3.Connection, run_id: int, token: str, outcome: Outcome, now: datetime
) -> bool:
    retrying = outcome.retry_at is not None
    error = outcome.error
    changed = db.execute(
        COMPLETE,
        (
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
            run_id,
            token,
        ),
    ).rowcount
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
