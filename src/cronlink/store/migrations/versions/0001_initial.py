"""Initial schema: jobs, schedules, runs, the fires ledger and run logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("next_at", sa.BigInteger),
    )
    op.create_index("ix_schedules_next_at", "schedules", ["next_at"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(10), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("scheduled_for", sa.BigInteger),
        sa.Column("enqueued_at", sa.BigInteger, nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("overlap", sa.String(10), nullable=False),
        sa.Column("dedupe_key", sa.String(400), unique=True),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("worker", sa.String(200)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", sa.BigInteger),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_traceback", sa.Text),
        sa.Column("error_reason", sa.String(40)),
        sa.Column("result", sa.Text),
        sa.Column("duration_ms", sa.BigInteger),
        sa.Column("peak_memory", sa.BigInteger),
    )
    op.create_index(
        "ix_runs_queued", "runs", ["tier", "not_before", "id"], **_where("state = 'queued'")
    )
    op.create_index("ix_runs_leased", "runs", ["lease_expires_at"], **_where("state = 'running'"))
    op.create_index(
        "ix_runs_active", "runs", ["job", "state"], **_where("state IN ('queued', 'running')")
    )
    op.create_index("ix_runs_job", "runs", ["job", "id"])
    op.create_table(
        "fires",
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("scheduled_for", sa.BigInteger, nullable=False),
        sa.Column("fate", sa.String(20), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id")),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("job", "scheduled_for", name="uq_fires_job_instant"),
    )
    op.create_table(
        "run_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_run_logs_run", "run_logs", ["run_id"])


def downgrade() -> None:
    for table in ("run_logs", "fires", "runs", "schedules", "jobs"):
        op.drop_table(table)
