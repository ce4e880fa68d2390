"""What calls to chat models cost: each call (`ai_calls`) and each model's month
(`ai_months`, the totals budgets and metrics read).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.create_table(
        "ai_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("answered", sa.Boolean, nullable=False),
    )
    op.create_index("ix_ai_calls_run", "ai_calls", ["run_id", "attempt"])
    op.create_index("ix_ai_calls_at", "ai_calls", ["at"])
    op.create_table(
        "ai_months",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ai_months")
    op.drop_table("ai_calls")
