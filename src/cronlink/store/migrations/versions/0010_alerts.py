"""Alerts: each finding's state and the message it owes, and the rate-limit windows.

Revision ID: 0010
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
# 0010 to 0012 were written at the same time: chained in one line, so there is one head.
down_revision = "0011"

OWED = "owed IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
        sa.Column("resolved_at", sa.BigInteger),
        sa.Column("notified_at", sa.BigInteger),
        sa.Column("owed", sa.String(10)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_until", sa.BigInteger),
    )
    op.create_index(
        "ix_alerts_owed", "alerts", ["key"],
        sqlite_where=sa.text(OWED), postgresql_where=sa.text(OWED),
    )  # fmt: skip
    op.create_table(
        "alert_windows",
        sa.Column("start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sent", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_windows")
    op.drop_index("ix_alerts_owed", "alerts")
    op.drop_table("alerts")
