"""Connections: encrypted credentials, refresh leases, health, and their events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("health", sa.String(20), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("secrets", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("refresh_due_at", sa.BigInteger),
        sa.Column("refreshed_at", sa.BigInteger),
        sa.Column("refresh_lock", sa.String(64)),
        sa.Column("refresh_lock_until", sa.BigInteger),
        sa.Column("refresh_failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("health_failures", sa.Integer, nullable=False),
        sa.Column("health_successes", sa.Integer, nullable=False),
        sa.Column("checked_at", sa.BigInteger),
        sa.Column("latency_ms", sa.Integer),
        sa.Column("used_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_connections_refresh_due",
        "connections",
        ["refresh_due_at"],
        **_where("state = 'active'"),
    )
    op.create_index("ix_connections_owner", "connections", ["owner", "provider"])
    op.create_index("ix_connections_key", "connections", ["key_id"])
    op.create_table(
        "connection_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_connection_events_connection", "connection_events", ["connection_id", "id"])


def downgrade() -> None:
    for table in ("connection_events", "connections"):
        op.drop_table(table)
