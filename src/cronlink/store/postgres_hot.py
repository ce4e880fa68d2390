"""The PostgreSQL hot path: firing in batches over arrays, claims with SKIP LOCKED.

Each verb is a few set-based statements, whatever the batch size: round trips to the server,
not rows, are what cost here. Same schema and rules as SQLite (`fates.py`).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from cronlink.policies.overlap import overlap_matters
from cronlink.store.base import Completion
from cronlink.store.postgres_overlap import judged
from cronlink.store.postgres_sql import sql
from cronlink.store.rows import run_from_mapping
from cronlink.store.run_insert import BOUND, COLUMNS, insert_sql, pg_type, raw_values
from cronlink.store.schema import Instant, from_micros, runs, to_micros

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from sqlalchemy import Connection

    from cronlink.records.runs import Run, Schedule
    from cronlink.store.base import ClaimRequest, Done, ScheduleAdvance, Tick

_NAMES = [c.name for c in runs.columns]
_COLUMNS = ", ".join(_NAMES)
_INSTANTS = {c.name for c in runs.columns if isinstance(c.type, Instant)}

# Firing is one statement, so one round trip and atomic without a transaction around it.
# Run ids are drawn before the ledger insert so that each fresh `run` entry carries its run
# at once (the foreign key is checked at the end of the statement, when the run exists).
# The fate is `fates.fire_fate`'s rule, decided here against the paused jobs as they are.
_ARRAYS = ", ".join(f"CAST(:{c.name} AS {pg_type(c)}[])" for c in COLUMNS if c.name in BOUND)
_STARTING = insert_sql(
    lambda c: f"t.{c.name}",
    first=("id", "t.run_id"),
    select_from="fresh JOIN numbered AS t ON t.run_id = fresh.run_id",
    suffix="RETURNING id, job, scheduled_for, tier",
)
_TICKS = f"""
ticks AS (
    SELECT u.*, CASE WHEN u.missed THEN 'missed' WHEN j.name IS NOT NULL THEN 'skipped_paused'
        ELSE 'run' END AS fate
    FROM unnest(CAST(:missed AS bool[]), {_ARRAYS})
        WITH ORDINALITY AS u(missed, {", ".join(BOUND)}, n)
    LEFT JOIN jobs AS j ON j.name = u.job AND j.paused),
numbered AS (
    SELECT t.*, CASE WHEN fate = 'run'
        THEN nextval(pg_get_serial_sequence('runs', 'id')) END AS run_id
    FROM (SELECT * FROM ticks ORDER BY n) AS t),
fresh AS (
    INSERT INTO fires (job, scheduled_for, fate, run_id, recorded_at)
    SELECT job, scheduled_for, fate, run_id, :now FROM numbered ORDER BY n
    ON CONFLICT (job, scheduled_for) DO NOTHING
    RETURNING run_id),
started AS ({_STARTING})"""
_STARTED = """
SELECT id, job, scheduled_for, (SELECT count(pg_notify('cronlink_' || tier, ''))
    FROM (SELECT DISTINCT tier FROM started) AS tiers)
FROM started"""
_ADVANCE = """
advanced AS (
    UPDATE schedules SET cursor = u.c, next_at = u.n
    FROM unnest(CAST(:keys AS text[]), CAST(:cursors AS bigint[]), CAST(:nexts AS bigint[]))
        AS u(k, c, n)
    WHERE schedules.key = u.k AND schedules.cursor < u.c)"""
# These statements are prepared (psycopg, from a connection's fifth use), and once the table
# has statistics PostgreSQL may keep a generic plan, blind to `:limit` and the ids: it then
# claimed through a hash join over a scan of every run, and recorded through a scan of every
# running run's lease (ix_runs_leased, which naming the state lets it use). So the claimed ids
# are an array the update probes by primary key, and an attempt is fenced by its lease token
# alone: only a running run holds one, as every way out of `running` clears it (the reaper's
# fence too). With `postgres._generic_plans`, one run per transaction with 4 workers on an
# analyzed table: 2,086 -> 3,779 runs/s (bench/queue_bench.py).
_CLAIM = f"""
UPDATE runs SET state = 'running', attempt = attempt + 1, worker = :worker,
    lease_token = :token, lease_expires_at = :expires, started_at = :now
WHERE id = ANY(ARRAY(
    SELECT id FROM runs AS r
    WHERE r.tier = :tier AND r.state = 'queued' AND r.not_before <= :now
      AND (r.overlap != 'queue' OR NOT EXISTS (
          SELECT 1 FROM runs AS o WHERE o.job = r.job
          AND o.state IN ('queued', 'running') AND o.state = 'running'))
    ORDER BY r.not_before, r.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED))
RETURNING {_COLUMNS}
"""
DROP_SCHEDULES = text("DELETE FROM schedules WHERE key != ALL(CAST(:keys AS text[]))")
ADD_SCHEDULES = text("""
INSERT INTO schedules (key, job, cron, timezone, cursor, next_at)
SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:jobs AS text[]), CAST(:crons AS text[]),
    CAST(:zones AS text[]), CAST(:cursors AS bigint[]), CAST(:nexts AS bigint[]))
ON CONFLICT (key) DO NOTHING
""")
_COMPLETE = """
UPDATE runs SET state = u.state, finished_at = u.finished,
    not_before = COALESCE(u.retry, runs.not_before), error_type = u.etype,
    error_message = u.emessage, error_traceback = u.etrace, error_reason = u.ereason,
    result = u.result, duration_ms = u.duration, peak_memory = u.peak,
    requests = runs.requests + u.requests,
    cpu_ms = COALESCE(runs.cpu_ms + u.cpu, u.cpu, runs.cpu_ms),
    memory_mib_s = COALESCE(runs.memory_mib_s + u.memory, u.memory, runs.memory_mib_s),
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(CAST(:ids AS int[]), CAST(:tokens AS text[]), CAST(:states AS text[]),
    CAST(:finished AS bigint[]), CAST(:retries AS bigint[]), CAST(:etypes AS text[]),
    CAST(:emessages AS text[]), CAST(:etraces AS text[]), CAST(:ereasons AS text[]),
    CAST(:results AS text[]), CAST(:durations AS int[]), CAST(:peaks AS bigint[]),
    CAST(:requests AS int[]), CAST(:cpus AS bigint[]), CAST(:memories AS float8[]))
    WITH ORDINALITY AS u(id, token, state, finished, retry, etype, emessage, etrace, ereason,
        result, duration, peak, requests, cpu, memory, n)
WHERE runs.id = u.id AND runs.lease_token = u.token
RETURNING u.n, runs.attempt
"""
# One attempt, the common case of a worker turn: the same parameters as `_COMPLETE`, each
# one value rather than an array. Unnesting fifteen arrays of one element cost the server
# and the driver more than the update itself (bench/queue_bench.py, one run per transaction).
_COMPLETE_ONE = """
UPDATE runs SET state = :states, finished_at = :finished,
    not_before = COALESCE(:retries, runs.not_before), error_type = :etypes,
    error_message = :emessages, error_traceback = :etraces, error_reason = :ereasons,
    result = :results, duration_ms = :durations, peak_memory = :peaks,
    requests = runs.requests + :requests,
    cpu_ms = COALESCE(runs.cpu_ms + :cpus, :cpus, runs.cpu_ms),
    memory_mib_s = COALESCE(runs.memory_mib_s + :memories, :memories, runs.memory_mib_s),
    lease_token = NULL, lease_expires_at = NULL
WHERE runs.id = :ids AND runs.lease_token = :tokens
RETURNING 1 AS n, runs.attempt
"""
_ATTEMPT_KEYS = (
    "ids", "tokens", "states", "finished", "retries", "etypes", "emessages", "etraces",
    "ereasons", "results", "durations", "peaks", "requests", "cpus", "memories",
)  # fmt: skip

# Log lines are kept only for attempts whose lease held: they join what the update returned,
# by the attempt's position in the batch (a run may appear twice: a stale attempt and its
# retry).
_LOG = """
INSERT INTO run_logs (run_id, attempt, at, level, message)
SELECT l.id, done.attempt, l.at, l.level, l.message
FROM unnest(CAST(:log_ids AS int[]), CAST(:log_ns AS int[]), CAST(:log_ats AS bigint[]),
    CAST(:log_levels AS text[]), CAST(:log_messages AS text[]))
    WITH ORDINALITY AS l(id, dn, at, level, message, n)
JOIN done ON done.n = l.dn
ORDER BY l.n
"""
EXTEND = text("""
UPDATE runs SET lease_expires_at = :expires
WHERE id = ANY(:ids) AND worker = :worker AND state = 'running'
RETURNING id, cancel_requested
""")


async def record_ticks(
    db: AsyncConnection[Any], ticks: list[Tick], advances: list[ScheduleAdvance], now: datetime
) -> dict[tuple[str, datetime], int]:
    """Insert-or-ignore the ticks into the ledger, start the runs of the fresh ones, wake
    their workers and advance the cursors: one statement."""
    if not ticks and not advances:
        return {}
    # One lock order for every scheduler, so that concurrent batches never deadlock.
    ticks = sorted(ticks, key=lambda t: (t.run.job, t.run.scheduled_for))
    advances = sorted(advances, key=lambda a: a.key)
    stamp = to_micros(now)
    params: dict[str, Any] = {"now": stamp} | _tick_columns(ticks, stamp) | {
        "keys": [a.key for a in advances],
        "cursors": [to_micros(a.cursor) for a in advances],
        "nexts": [None if a.next_at is None else to_micros(a.next_at) for a in advances],
    }  # fmt: skip
    rows = await (await db.execute(_firing(bool(ticks), bool(advances)), params)).fetchall()
    instants: dict[tuple[str, int], datetime] = {}
    for tick in ticks:
        assert tick.run.scheduled_for is not None  # a tick is a scheduled instant
        instants[tick.run.job, to_micros(tick.run.scheduled_for)] = tick.run.scheduled_for
    return {(job, instants[job, at]): run_id for run_id, job, at, _ in rows}


def _tick_columns(ticks: list[Tick], stamp: int) -> dict[str, list[Any]]:
    """The ticks' runs as one array per column (and whether each tick was missed)."""
    rows = [raw_values(tick.run, stamp) for tick in ticks]
    columns = {name: [row[name] for row in rows] for name in BOUND}
    return columns | {"missed": [tick.missed for tick in ticks]}


@cache
def _firing(firing: bool, advancing: bool) -> str:
    parts = ([_TICKS] if firing else []) + ([_ADVANCE] if advancing else [])
    tail = _STARTED if firing else "SELECT NULL, NULL, NULL, NULL WHERE false"
    return sql(text(f"WITH {', '.join(parts)} {tail}"))


async def complete_and_claim(
    db: AsyncConnection[Any], done: list[Done], now: datetime, request: ClaimRequest | None,
    token: str,
) -> Completion:  # fmt: skip
    """Record the attempts whose lease still holds (False where lost), then claim.

    One statement, committed on its own: a worker's turn costs one round trip. Only runs
    whose job's overlap policy must be consulted take a second transaction.
    """
    params: dict[str, Any] = _completion(done, now) if done else {}
    if len(done) == 1:
        params |= {key: params[key][0] for key in _ATTEMPT_KEYS}
    if request is not None:
        params |= _claiming(request, now, token, request.limit)
    recording = None if not done else _COMPLETE_ONE if len(done) == 1 else _COMPLETE
    statement = _turn(recording, bool(params.get("log_ids")), request is not None)
    rows = await (await db.execute(statement, params)).fetchall()
    held = set(rows[0][0] or ()) if rows else set()
    claimed = [_run(row[1:]) for row in rows if request is not None and row[1] is not None]
    if done and request is not None and len(claimed) < request.limit:
        # The claim did not see this statement's completions: a retry due now, or a run
        # that waited (overlap `queue`) on one that just ended, is claimable only now.
        more = _claiming(request, now, token, request.limit - len(claimed))
        rows = await (await db.execute(_turn(None, False, True), more)).fetchall()
        claimed += [_run(row[1:]) for row in rows if row[1] is not None]
    if any(overlap_matters(run) for run in claimed):
        claimed = await judged(db, claimed, now, token)
    return Completion(held=[i in held for i in range(1, len(done) + 1)], claimed=claimed)


def _claiming(request: ClaimRequest, now: datetime, token: str, limit: int) -> dict[str, Any]:
    return {
        "worker": request.worker,
        "token": token,
        "expires": to_micros(now + request.lease),
        "now": to_micros(now),
        "tier": request.tier.value,
        "limit": limit,
    }


@cache
def _turn(recording: str | None, logging: bool, claiming: bool) -> str:
    """The statement of a worker's turn, recording attempts with the update `recording`
    (`_COMPLETE_ONE`, `_COMPLETE`) if any: rows of (positions completed, *claimed run or
    NULLs)."""
    parts = []
    if recording is not None:
        parts.append(f"done AS ({recording})")
    if logging:
        parts.append(f"logged AS ({_LOG})")
    if claiming:
        parts.append(f"claimed AS ({_CLAIM})")
    held = "(SELECT array_agg(n) FROM done)" if recording else "CAST(NULL AS bigint[])"
    if claiming:
        tail = f"SELECT {held}, c.* FROM (SELECT) AS one LEFT JOIN claimed AS c ON true"
    else:
        tail = f"SELECT {held}"
    return sql(text(f"WITH {', '.join(parts)} {tail}" if parts else tail))


def _completion(done: list[Done], now: datetime) -> dict[str, Any]:
    stamp = to_micros(now)
    params: dict[str, list[Any]] = {k: [] for k in (
        *_ATTEMPT_KEYS, "log_ids", "log_ns", "log_ats", "log_levels", "log_messages")}  # fmt: skip
    for n, d in enumerate(done, start=1):
        outcome, error = d.outcome, d.outcome.error
        retrying = outcome.retry_at is not None
        params["ids"].append(d.run_id)
        params["tokens"].append(d.lease_token)
        params["states"].append("queued" if retrying else outcome.state.value)
        params["finished"].append(None if retrying else stamp)
        params["retries"].append(None if outcome.retry_at is None else to_micros(outcome.retry_at))
        params["etypes"].append(error.type if error else None)
        params["emessages"].append(error.message if error else None)
        params["etraces"].append(error.traceback if error else None)
        params["ereasons"].append(error.reason if error else None)
        params["results"].append(outcome.result)
        params["durations"].append(outcome.duration_ms)
        params["peaks"].append(outcome.peak_memory)
        params["requests"].append(outcome.spend.requests)
        params["cpus"].append(outcome.spend.cpu_ms)
        params["memories"].append(outcome.spend.memory_mib_s)
        for at, level, message in outcome.logs:
            params["log_ids"].append(d.run_id)
            params["log_ns"].append(n)
            params["log_ats"].append(to_micros(at))
            params["log_levels"].append(level)
            params["log_messages"].append(message)
    return params


async def extend_leases(
    db: AsyncConnection[Any], worker: str, run_ids: list[int], expires: datetime
) -> set[int]:
    params = {"expires": to_micros(expires), "ids": run_ids, "worker": worker}
    rows = await (await db.execute(sql(EXTEND), params)).fetchall()
    held = {row[0] for row in rows}
    return {row[0] for row in rows if row[1]} | (set(run_ids) - held)


def _run(row: tuple[Any, ...]) -> Run:
    values = dict(zip(_NAMES, row, strict=True))
    for name in _INSTANTS:
        if values[name] is not None:
            values[name] = from_micros(values[name])
    return run_from_mapping(values)


def sync_schedules(c: Connection, wanted: list[Schedule]) -> None:
    """Like `queries.sync_schedules`, but safe when several schedulers start at once (new
    schedules are inserted-or-ignored, not read-then-inserted), and over arrays, so that any
    number of schedules fits in one statement's parameters."""
    c.execute(DROP_SCHEDULES, {"keys": [s.key for s in wanted]})
    if wanted:
        c.execute(
            ADD_SCHEDULES,
            {
                "keys": [s.key for s in wanted],
                "jobs": [s.job for s in wanted],
                "crons": [s.cron for s in wanted],
                "zones": [s.timezone for s in wanted],
                "cursors": [to_micros(s.cursor) for s in wanted],
                "nexts": [None if s.next_at is None else to_micros(s.next_at) for s in wanted],
            },
        )
