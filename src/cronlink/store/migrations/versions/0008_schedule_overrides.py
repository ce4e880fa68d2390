"""Schedules changed through the admin API: they replace a job's configured schedules
(in every scheduler) until cleared.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "schedule_overrides",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("schedules", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedule_overrides")
