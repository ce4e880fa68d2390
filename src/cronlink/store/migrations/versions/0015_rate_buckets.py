"""Rate limits in the database: one bucket per limit and key, shared by every process
and kept across restarts.

UNLOGGED on PostgreSQL: every checked call updates a bucket, and a bucket is worth no WAL
write (nor the flush at each commit); a crash of the server empties the table, which only
refills the buckets.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    unlogged = ["UNLOGGED"] if op.get_context().dialect.name == "postgresql" else []
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("taken", sa.Boolean, nullable=False),
        prefixes=unlogged,
    )
    op.create_index("ix_rate_buckets_tat", "rate_buckets", ["tat"])


def downgrade() -> None:
    op.drop_table("rate_buckets")
