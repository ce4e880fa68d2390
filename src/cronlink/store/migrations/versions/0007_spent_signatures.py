"""Signatures already accepted, shared by every `cronlink serve` on the database: a
signed call replayed to another process behind the same balancer is refused too.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "spent_signatures",
        sa.Column("signature", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_spent_signatures_expires_at", "spent_signatures", ["expires_at"])


def downgrade() -> None:
    op.drop_table("spent_signatures")
