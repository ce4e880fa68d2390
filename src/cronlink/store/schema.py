"""The tables, in SQLAlchemy Core: one schema for SQLite and PostgreSQL.

Instants are stored as integer microseconds since the Unix epoch (UTC): exact, compact,
compared the same way by both engines, and free of each driver's time zone handling.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

from cronlink.storable import check

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return (value - _EPOCH) // timedelta(microseconds=1)


def micros_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


class Instant(TypeDecorator[datetime]):
    """An aware datetime stored as microseconds since the epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else from_micros(int(value))


DEDUPE_KEYED = "dedupe_key IS NOT NULL"
ON_DEDUPE_KEY = f"ON CONFLICT (dedupe_key) WHERE {DEDUPE_KEYED} DO NOTHING"
"""The conflict target of an insert that yields to the run its dedupe key already started:
it names the partial index's predicate, or neither engine would infer the index."""


def refuse_unstorable(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    """`before_cursor_execute` on both engines: text a parameter cannot hold is refused
    with `UnstorableError` before the driver sees it (PostgreSQL's driver would fail on a
    NUL, both on a lone surrogate, each its own way; SQLite would keep a NUL)."""
    for row in parameters if many else (parameters,):
        for value in row.values() if isinstance(row, dict) else row or ():
            if isinstance(value, str):
                check(value, "a value to store")


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


metadata = MetaData()

NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}
"""The id of a row with history is never given to another row, on either engine: its id
is in other tables, in dedupe keys (`refresh:<connection>:<version>`) and in queued
runs' payloads, and a new row under an old id would inherit all of them. SQLite otherwise
gives max(id) + 1, an id again once the newest row is deleted; PostgreSQL's sequences
never go back (`copy` carries them over with the rows: `ids.py`).

With ids never reused, a dedupe key needs no generation of its own: each names the row
it belongs to and a counter of that row that only goes up (a connection's `version`, an
event's id and instant), so two rows' keys cannot meet."""

jobs = Table(
    "jobs",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("updated_at", Instant, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("job", String(200), nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("cursor", Instant, nullable=False),
    Column("next_at", Instant),
    Index("ix_schedules_next_at", "next_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(200), nullable=False),
    Column("tier", String(10), nullable=False),
    Column("reason", String(10), nullable=False),
    Column("state", String(10), nullable=False),
    Column("payload", Text),
    Column("scheduled_for", Instant),
    Column("enqueued_at", Instant, nullable=False),
    Column("not_before", Instant, nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("overlap", String(10), nullable=False),
    Column("dedupe_key", String(400)),
    Column("started_at", Instant),
    Column("finished_at", Instant),
    Column("worker", String(200)),
    Column("lease_token", String(64)),
    Column("lease_expires_at", Instant),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("error_traceback", Text),
    Column("error_reason", String(40)),
    Column("result", Text),
    Column("duration_ms", BigInteger),
    Column("peak_memory", BigInteger),
    # What the run spent over all its attempts (usage and cost): outbound requests, and
    # for heavy runs CPU time and memory integrated over time.
    # A server default: the hot paths insert runs in plain SQL that leaves these out.
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("cpu_ms", BigInteger),
    Column("memory_mib_s", Float),
    # The trace a caller's run continues (W3C `traceparent`, version 00: 55 characters).
    Column("traceparent", String(55)),
    # Partial indexes: a run enters and leaves each as its state changes, so claiming and
    # completing touch few index entries, and each index holds only live runs.
    Index("ix_runs_queued", "tier", "not_before", "id", **_where("state = 'queued'")),
    Index("ix_runs_leased", "lease_expires_at", **_where("state = 'running'")),
    Index("ix_runs_active", "job", "state", **_where("state IN ('queued', 'running')")),
    Index("ix_runs_job", "job", "id"),
    # The dashboard's window of recent runs, and its list of dead runs. Only columns that
    # never change after the insert: an index holding `state` or `duration_ms` is rewritten
    # at every claim and completion (-12% queue throughput on SQLite, bench/queue_bench.py).
    Index("ix_runs_enqueued", "enqueued_at", "job"),
    Index("ix_runs_dead", "id", **_where("state = 'dead'")),
    # Most runs have none: a plain unique constraint indexed a NULL for each of them, at
    # every claim and completion again.
    Index("ux_runs_dedupe_key", "dedupe_key", unique=True, **_where(DEDUPE_KEYED)),
    **NEVER_REUSED,
)

fires = Table(
    "fires",
    metadata,
    Column("job", String(200), nullable=False),
    Column("scheduled_for", Instant, nullable=False),
    Column("fate", String(20), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("recorded_at", Instant, nullable=False),
    UniqueConstraint("job", "scheduled_for", name="uq_fires_job_instant"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Instant, nullable=False),
    Column("level", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_run_logs_run", "run_id"),
    **NEVER_REUSED,
)

connections = Table(
    "connections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(64), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("health", String(20), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("secrets", Text, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("expires_at", Instant),
    Column("refresh_due_at", Instant),
    Column("refreshed_at", Instant),
    # A refresh holds the connection under a lease (token + expiry) that any process may
    # take once it lapses: one refresh at a time across machines, none stuck forever.
    Column("refresh_lock", String(64)),
    Column("refresh_lock_until", Instant),
    Column("refresh_failures", Integer, nullable=False),
    Column("last_error", Text),
    Column("health_failures", Integer, nullable=False),
    Column("health_successes", Integer, nullable=False),
    Column("checked_at", Instant),
    Column("latency_ms", Integer),
    Column("used_at", Instant),
    # A 429 from the provider pauses the account for every job that calls it.
    Column("throttled_until", Instant),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    # The owner's handle on the connection, which steps name (`connection = "crm-main"`).
    Column("name", String(64)),
    Index("ix_connections_refresh_due", "refresh_due_at", **_where("state = 'active'")),
    Index("ux_connections_owner_name", "owner", "name", unique=True, **_where("name IS NOT NULL")),
    Index("ix_connections_owner", "owner", "provider"),
    Index("ix_connections_key", "key_id"),
    Index(
        "ix_connections_unhealthy",
        "id",
        **_where("state = 'needs_reauth' OR health IN ('down', 'auth_failed')"),
    ),
    **NEVER_REUSED,
)

connection_events = Table(
    "connection_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection_id", Integer, nullable=False),
    Column("at", Instant, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_connection_events_connection", "connection_id", "id"),
    **NEVER_REUSED,
)

automations = Table(
    "automations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("connection_id", Integer, nullable=False),
    Column("trigger", String(100)),
    Column("params", Text, nullable=False),
    Column("steps", Text, nullable=False),
    Column("schedule", String(200)),
    Column("interval_s", Integer, nullable=False),
    Column("offset_s", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("cursor", Text, nullable=False),
    Column("next_poll_at", Instant),
    # One poll of an automation at a time: a lease any poller may take once it lapses.
    Column("poll_lease", String(64)),
    Column("poll_lease_until", Instant),
    Column("last_poll_at", Instant),
    Column("last_success_at", Instant),
    Column("advanced_at", Instant),
    Column("poll_failures", Integer, nullable=False),
    Column("last_error", Text),
    Column("stalled", Boolean, nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    Index("ix_automations_due", "next_poll_at", **_where("state = 'active'")),
    Index("ix_automations_connection", "connection_id"),
    **NEVER_REUSED,
)

automation_events = Table(
    "automation_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("automation_id", Integer, nullable=False),
    Column("key", String(400), nullable=False),
    Column("state", String(20), nullable=False),
    Column("data", Text, nullable=False),
    Column("seen_at", Instant, nullable=False),
    Column("run_id", Integer),
    Column("step", Integer, nullable=False),
    Column("replays", Integer, nullable=False, server_default="0"),
    Column("outputs", Text, nullable=False),
    Column("error", Text),
    Column("started_at", Instant),
    Column("finished_at", Instant),
    UniqueConstraint("automation_id", "key", name="uq_automation_events_key"),
    Index(
        "ix_automation_events_open",
        "automation_id",
        "state",
        "id",
        **_where("state IN ('pending', 'running')"),
    ),
    Index("ix_automation_events_seen", "seen_at"),
    **NEVER_REUSED,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Instant, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(400), nullable=False),
    Column("client", String(100), nullable=False),
    Column("outcome", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_log_at", "at"),
    **NEVER_REUSED,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(20), nullable=False),
    # SHA-256 of the token: the token itself is shown once, at creation, and never kept.
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", Instant, nullable=False),
    Column("expires_at", Instant, nullable=True),
    Column("revoked_at", Instant, nullable=True),
    Column("last_used_at", Instant, nullable=True),
    **NEVER_REUSED,
)

spent_signatures = Table(
    "spent_signatures",
    metadata,
    Column("signature", String(64), primary_key=True),
    Column("expires_at", Instant, nullable=False),
    Index("ix_spent_signatures_expires_at", "expires_at"),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    # A rate limit's bucket (`limit:key`, e.g. `address:203.0.113.9`), shared by every
    # process: `tat` is when it would be full again (seconds since the epoch; GCRA's
    # theoretical arrival time), `granted` how many tokens the last call got.
    Column("key", String(200), primary_key=True),
    Column("tat", Float, nullable=False),
    Column("granted", Integer, nullable=False),
    Index("ix_rate_buckets_tat", "tat"),
)

ai_calls = Table(
    "ai_calls",
    metadata,
    # One row per call to a chat model, answered or failed: what a run's attempts spent
    # (`runs show`); months add up in `ai_months`.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Instant, nullable=False),
    Column("model", String(100), nullable=False),
    Column("job", String(200), nullable=False),
    Column("run_id", Integer),
    Column("attempt", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("answered", Boolean, nullable=False),
    Index("ix_ai_calls_run", "run_id", "attempt"),
    Index("ix_ai_calls_at", "at"),
)

ai_months = Table(
    "ai_months",
    metadata,
    # A model's running totals for a calendar month (UTC), added to in the transaction
    # that records each call: a budget check and a metrics scrape read one row per model
    # and month, never the calls.
    Column("model", String(100), primary_key=True),
    Column("month", Date, primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
)

schedule_overrides = Table(
    "schedule_overrides",
    metadata,
    Column("job", String(200), primary_key=True),
    # JSON: [[cron, timezone], ...]
    Column("schedules", Text, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("role", String(100), primary_key=True),
    Column("at", Instant, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("rule", String(40), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(10), nullable=False),
    Column("since", Instant, nullable=False),
    Column("resolved_at", Instant),
    Column("notified_at", Instant),
    # The message still owed to the channels ('firing' or 'recovered'), and the lease of
    # the evaluator sending it: one sender per message across processes.
    Column("owed", String(10)),
    Column("lease_token", String(64)),
    Column("lease_until", Instant),
    Index("ix_alerts_owed", "key", **_where("owed IS NOT NULL")),
)

alert_windows = Table(
    "alert_windows",
    metadata,
    # Messages sent in the rate-limit window that starts at `start`: taken by
    # compare-and-swap, so evaluators together keep under the cap.
    Column("start", Instant, primary_key=True, autoincrement=False),
    Column("sent", Integer, nullable=False),
)


def enqueued_since(since: datetime, *columns: ColumnElement[Any]) -> CTE:
    """`columns` of the runs enqueued since `since`, read on their own (MATERIALIZED)
    through `ix_runs_enqueued`: with no statistics (cronlink never runs ANALYZE), SQLite's
    planner would rather walk `ix_runs_job` over every run to group by job than read the
    window's slice and sort it (0.5 s instead of 0.05 s with 1,000,000 runs,
    bench/dashboard_bench.py)."""
    return (
        select(*columns).where(runs.c.enqueued_at >= since).cte("recent_runs")
        .prefix_with("MATERIALIZED")
    )  # fmt: skip
