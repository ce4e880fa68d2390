"""Rate-limit buckets say how many tokens a call got, not whether it got one: a process
takes a few tokens at once and spends them without a database call.

SQLite changes a column's type only by rebuilding the table (Alembic's batch mode);
PostgreSQL alters it in place, so the table stays UNLOGGED. The buckets are kept.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    with op.batch_alter_table("rate_buckets") as buckets:
        buckets.alter_column(
            "taken", new_column_name="granted", type_=sa.Integer, existing_type=sa.Boolean,
            existing_nullable=False, postgresql_using="CAST(taken AS INTEGER)",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("rate_buckets") as buckets:
        buckets.alter_column(
            "granted", new_column_name="taken", type_=sa.Boolean, existing_type=sa.Integer,
            existing_nullable=False, postgresql_using="granted > 0",
        )  # fmt: skip
