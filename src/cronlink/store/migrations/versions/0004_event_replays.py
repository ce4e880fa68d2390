"""Count the replays of a finished event: its steps' idempotency keys include the count, so
that a replay of a done event is sent again and a resumed dead letter is not.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("automation_events") as table:
        table.add_column(sa.Column("replays", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("automation_events") as table:
        table.drop_column("replays")
