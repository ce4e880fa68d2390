"""Indexes the dashboard reads by: recent runs, dead runs, unhealthy connections.

Revision ID: 0011
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0012"

DEAD = "state = 'dead'"
UNHEALTHY = "state = 'needs_reauth' OR health IN ('down', 'auth_failed')"


def upgrade() -> None:
    op.create_index("ix_runs_enqueued", "runs", ["enqueued_at", "job"])
    op.create_index(
        "ix_runs_dead", "runs", ["id"],
        sqlite_where=sa.text(DEAD), postgresql_where=sa.text(DEAD),
    )  # fmt: skip
    op.create_index(
        "ix_connections_unhealthy", "connections", ["id"],
        sqlite_where=sa.text(UNHEALTHY), postgresql_where=sa.text(UNHEALTHY),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_connections_unhealthy", "connections")
    op.drop_index("ix_runs_dead", "runs")
    op.drop_index("ix_runs_enqueued", "runs")
