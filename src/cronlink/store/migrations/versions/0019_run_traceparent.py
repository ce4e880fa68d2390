"""The trace a run continues: the W3C `traceparent` its caller sent (`POST /cron/{job}`),
so that its attempts' spans join the caller's trace.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    # A nullable column with no default: both engines add it in place (no rebuild).
    op.add_column("runs", sa.Column("traceparent", sa.String(55)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("traceparent")
