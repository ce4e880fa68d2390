"""What each run spent over its attempts: outbound requests, and for heavy runs CPU time
and memory-seconds (`cronlink usage`, `cronlink advise`).

Revision ID: 0012
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("requests", sa.Integer, nullable=False, server_default="0"))
        runs.add_column(sa.Column("cpu_ms", sa.BigInteger))
        runs.add_column(sa.Column("memory_mib_s", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("memory_mib_s")
        runs.drop_column("cpu_ms")
        runs.drop_column("requests")
