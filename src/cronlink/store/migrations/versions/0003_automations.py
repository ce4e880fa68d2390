"""Automations, their event ledger, and the shared rate-limit pause of a connection.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.add_column("connections", sa.Column("throttled_until", sa.BigInteger))
    op.create_table(
        "automations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("connection_id", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(100)),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
        sa.Column("schedule", sa.String(200)),
        sa.Column("interval_s", sa.Integer, nullable=False),
        sa.Column("offset_s", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("next_poll_at", sa.BigInteger),
        sa.Column("poll_lease", sa.String(64)),
        sa.Column("poll_lease_until", sa.BigInteger),
        sa.Column("last_poll_at", sa.BigInteger),
        sa.Column("last_success_at", sa.BigInteger),
        sa.Column("advanced_at", sa.BigInteger),
        sa.Column("poll_failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("stalled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_automations_due", "automations", ["next_poll_at"], **_where("state = 'active'")
    )
    op.create_index("ix_automations_connection", "automations", ["connection_id"])
    op.create_table(
        "automation_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("automation_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("seen_at", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("outputs", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.UniqueConstraint("automation_id", "key", name="uq_automation_events_key"),
    )
    op.create_index(
        "ix_automation_events_open",
        "automation_events",
        ["automation_id", "state", "id"],
        **_where("state IN ('pending', 'running')"),
    )
    op.create_index("ix_automation_events_seen", "automation_events", ["seen_at"])


def downgrade() -> None:
    for table in ("automation_events", "automations"):
        op.drop_table(table)
    op.drop_column("connections", "throttled_until")
